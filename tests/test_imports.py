import subprocess
import sys

import pytest


@pytest.mark.slow
def test_losses_and_mixers_are_pure_torch():
    code = ("import sys, dm_ssl.losses, dm_ssl.mixers; "
            "bad = [m for m in ('semilearn', 'timm', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

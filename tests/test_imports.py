"""What importing each layer pulls in, checked in one fresh interpreter (an interpreter start
with semilearn costs ~10 s on 2 cores, so the checks share one)."""

import subprocess
import sys
import textwrap

import pytest

LAYERS = textwrap.dedent("""
    import sys
    # a sweep worker maps an exit status with dm_ssl.run.errors: no torch, no semilearn
    from dm_ssl.run.errors import EXIT_STOPPED
    assert 'torch' not in sys.modules, 'dm_ssl.run imported its modules eagerly'
    import dm_ssl.losses, dm_ssl.mixers
    bad = [m for m in ('semilearn', 'timm', 'transformers') if m in sys.modules]
    assert not bad, ('losses and mixers are pure torch', bad)
    import dm_ssl.data
    assert 'semilearn' not in sys.modules, 'dm_ssl.data imports semilearn lazily'
    from dm_ssl.data import build_ssl_datasets
    assert 'semilearn' in sys.modules

    # dm_ssl.lazy_imports: semilearn's NLP/audio nets and aim are not executed ...
    import dm_ssl.algorithms, semilearn.nets
    assert 'transformers' not in sys.modules, 'semilearn.nets imported transformers'
    assert 'timm' not in sys.modules, 'semilearn.nets imported timm (its ViTs)'
    assert type(sys.modules['aim']).__name__ == '_LazyModule'
    assert semilearn.nets.wrn_28_2.__module__ == 'semilearn.nets.wrn.wrn'  # untouched
    # ... until used: a stand-in's function is semilearn's own, called through
    from dm_ssl import lazy_imports
    real = lazy_imports.load_real('semilearn.nets.hubert')
    assert 'transformers' in sys.modules
    assert real.hubert_base.__module__ == 'semilearn.nets.hubert.hubert'
    assert lazy_imports.load_real('semilearn.nets.hubert') is real  # loaded once
    real.hubert_base = lambda *a, **k: ('called', a, k)
    assert semilearn.nets.hubert_base(1, x=2) == ('called', (1,), {'x': 2})
    from semilearn.nets.bert.bert import ClassificationBert  # submodules import as usual
    assert semilearn.nets.bert.bert.ClassificationBert is ClassificationBert
    import dm_ssl.run
    homes = {name: getattr(dm_ssl.run, name).__module__ for name in dm_ssl.run.__all__
             if callable(getattr(dm_ssl.run, name))}
    assert sorted(dm_ssl.run.__all__) == sorted(dm_ssl.run._HOMES)
    assert all(homes[n] == 'dm_ssl.run.' + dm_ssl.run._HOMES[n] for n in homes), homes
    assert dm_ssl.run.EXIT_STOPPED == 75 and dm_ssl.run.CKPT
    import aim
    assert aim.Run is not None and type(aim).__name__ != '_LazyModule'
    print('ok')
""")


@pytest.mark.slow
def test_import_layers_and_the_deferred_semilearn_parts():
    out = subprocess.run([sys.executable, "-c", LAYERS], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_eager_imports_switch():
    code = ("import os, sys; os.environ['DM_SSL_EAGER_IMPORTS'] = '1'; import dm_ssl; "
            "from dm_ssl import lazy_imports; assert lazy_imports._FINDER not in sys.meta_path; "
            "assert not lazy_imports.install()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)

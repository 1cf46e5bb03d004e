import os

import pytest

from cluster import Cluster
from harness import Broker, resolve_tern_bin


@pytest.fixture(scope="session")
def tern_bin():
    path = resolve_tern_bin()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"broker binary not found or not executable: {path} "
            f"(set TERN_BIN or run ./scripts/test, which builds it)", pytrace=False)
    return path


@pytest.fixture
def cluster3(request, tmp_path, tern_bin):
    """A started 3-node combined loopback cluster (`--shards 1`) with the test module's `EXTRA`
    broker settings (none if it has no `EXTRA`); every broker is killed at teardown."""
    track = request.node.__dict__.setdefault("_tern_brokers", [])
    extra = getattr(request.module, "EXTRA", None)
    c = Cluster(tern_bin, tmp_path / "c", 3, "combined", extra=extra, track=track)
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def broker_factory(request, tmp_path, tern_bin):
    """make(*extra_args, start=True, **Broker kwargs) -> Broker; all are cleaned up."""
    brokers = []
    request.node._tern_brokers = brokers

    def make(*extra_args, start=True, **kwargs):
        kwargs.setdefault("name", f"broker{len(brokers)}")
        b = Broker(tern_bin, tmp_path, extra_args=extra_args, **kwargs)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    problems = [pr for pr in (b.cleanup() for b in brokers) if pr]
    if problems:
        tails = "\n".join(f"--- {b.name} stderr tail:\n{b.stderr_tail(30)}" for b in brokers)
        pytest.fail("unclean broker shutdown at teardown: " + "; ".join(problems) + "\n" + tails,
                    pytrace=False)


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_tern_brokers", []):
            rep.sections.append((
                f"tern {b.name} stderr tail ({b.stderr_path}; exit codes {b.exit_codes})",
                b.stderr_tail(),
            ))

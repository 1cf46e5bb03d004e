"""Cluster (KRaft) settings: bad combinations are refused at start with exit code 2 and a message
naming the problem; a one-voter combined node runs as the single-node broker does."""

import subprocess

import pytest

import kclients as kc
from harness import free_port


def _run_serve(tern_bin, args, tmp_path, timeout=30):
    """Run `tern serve ...` expecting it to exit by itself (bounded)."""
    try:
        return subprocess.run([str(tern_bin), "serve", "--metrics-listener", "none", *args],
                              cwd=str(tmp_path), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`tern serve {' '.join(args)}` did not exit within {timeout}s "
                             f"(expected a startup refusal); stderr: {e.stderr!r}")


def _combined(tmp_path, node_id="1", voters=None, **over):
    """Flags of a combined node of a 3-voter cluster, with overrides (None removes a flag)."""
    b, c = free_port(), free_port()
    flags = {
        "--node-id": node_id,
        "--process-roles": "broker,controller",
        "--controller-quorum-voters": voters or f"1@127.0.0.1:{c},2@127.0.0.1:{c + 1},3@127.0.0.1:{c + 2}",
        "--controller-listener-names": "CONTROLLER",
        "--listeners": f"PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}",
        "--log-dirs": str(tmp_path / f"data-{node_id}"),
    }
    for k, v in over.items():
        flags[f"--{k.replace('_', '-')}"] = v
    args = []
    for k, v in flags.items():
        if v is not None:
            args += [k, v]
    return args


REFUSALS = [
    ("malformed-voters", dict(controller_quorum_voters="1@127.0.0.1"), "controller.quorum.voters"),
    ("voter-id-not-a-number", dict(controller_quorum_voters="one@127.0.0.1:9093"),
     "controller.quorum.voters"),
    ("duplicate-voter", dict(controller_quorum_voters="1@127.0.0.1:9093,1@127.0.0.1:9094"),
     "appears twice"),
    ("controller-not-a-voter", dict(node_id="7"), "not one of the voters"),
    ("node-id-missing", dict(node_id=None), "node.id is required"),
    ("broker-role-but-voter", dict(process_roles="broker", listeners="PLAINTEXT://127.0.0.1:1"),
     "a voter must have the controller role"),
    ("unknown-role", dict(process_roles="broker,zookeeper"), "unknown role"),
    ("voters-without-roles", dict(process_roles=None), "process.roles is required"),
    ("no-controller-listener", dict(listeners="PLAINTEXT://127.0.0.1:1"),
     "must contain the controller listener"),
    ("tls-listener", dict(listener_security_protocol_map="PLAINTEXT:PLAINTEXT,CONTROLLER:SSL"),
     "PLAINTEXT only"),
    ("inter-broker-is-controller", dict(inter_broker_listener_name="CONTROLLER"),
     "must not be a controller listener"),
    ("heartbeat-not-below-session", dict(broker_heartbeat_interval_ms="9000"),
     "below broker.session.timeout.ms"),
]


@pytest.mark.parametrize("case,over,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_cluster_config_exits_2_naming_the_problem(tern_bin, tmp_path, case, over, message):
    node_id = over.pop("node_id", "1")
    res = _run_serve(tern_bin, _combined(tmp_path, node_id=node_id, **over), tmp_path)
    assert res.returncode == 2, f"{case}: exit code {res.returncode}; stderr: {res.stderr}"
    assert message in res.stderr, f"{case}: message lacks {message!r}: {res.stderr!r}"
    assert "panicked" not in res.stderr, res.stderr


def test_cluster_keys_in_config_file_are_validated_too(tern_bin, tmp_path):
    cfg = tmp_path / "cluster.properties"
    cfg.write_text("process.roles=controller\nnode.id=4\n"
                   "controller.quorum.voters=1@127.0.0.1:9093\n"
                   "controller.listener.names=CONTROLLER\n"
                   "listeners=CONTROLLER://127.0.0.1:9093\n"
                   f"log.dirs={tmp_path / 'data'}\n")
    res = _run_serve(tern_bin, ["--config", str(cfg)], tmp_path)
    assert res.returncode == 2, res.stderr
    assert "node.id 4" in res.stderr and "not one of the voters" in res.stderr, res.stderr


def test_single_voter_combined_node_serves(broker_factory, tmp_path):
    port, cport = free_port(), free_port()
    data = tmp_path / "single-voter"
    cfg = tmp_path / "single.properties"
    cfg.write_text("process.roles=broker,controller\nnode.id=1\n"
                   f"controller.quorum.voters=1@127.0.0.1:{cport}\n"
                   "controller.listener.names=CONTROLLER\n"
                   f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n"
                   f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n"
                   f"log.dirs={data}\n"
                   "broker.rack=az1\n")
    b = broker_factory("--shards", "1", config=cfg, default_args=False, port=port, log_dir=data,
                       name="single-voter")
    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all")
    kc.produce(p, "single-voter-topic", b"v", d)
    kc.flush(p)
    d.assert_no_errors()
    md = kc.admin(b.bootstrap).list_topics(timeout=10)
    assert list(md.brokers) == [1], md.brokers  # node.id from the cluster settings

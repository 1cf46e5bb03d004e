"""server.properties handling and CLI validation."""

import subprocess

import kclients as kc
from harness import free_port


def _run_serve(tern_bin, args, tmp_path, timeout=30):
    """Run `tern serve ...` expecting it to exit by itself (bounded)."""
    try:
        return subprocess.run([str(tern_bin), "serve", *args], cwd=str(tmp_path),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`tern serve {' '.join(args)}` did not exit within {timeout}s "
                             f"(expected a startup error); stderr: {e.stderr!r}")


def test_config_file_unknown_key_warns_and_values_apply(broker_factory, tmp_path):
    port = free_port()
    data = tmp_path / "cfg-data"
    cfg = tmp_path / "server.properties"
    cfg.write_text(
        "# tern test config\n"
        f"listeners=PLAINTEXT://127.0.0.1:{port}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n"
        f"log.dirs={data}\n"
        "num.partitions=3\n"
        "auto.create.topics.enable=true\n"
        "tern.some.unknown.key=42\n"
    )
    b = broker_factory(config=cfg, default_args=False, port=port, log_dir=data, name="cfg")
    warned = [ln for ln in b.stderr_text().splitlines() if "tern.some.unknown.key" in ln]
    assert warned, f"no warning naming the unknown key; stderr:\n{b.stderr_tail()}"
    assert any("warn" in ln.lower() for ln in warned), warned

    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all")
    kc.produce(p, "cfg-auto", b"v", d)
    kc.flush(p)
    d.assert_no_errors()
    kc.wait_for_topic(b.bootstrap, "cfg-auto", 3)  # num.partitions from the file
    assert (data / f"cfg-auto-{d.acked[0].partition}").is_dir()  # log.dirs from the file


def test_flags_override_config_file(broker_factory, tmp_path):
    cfg = tmp_path / "server.properties"
    cfg.write_text("num.partitions=3\nauto.create.topics.enable=false\n")
    b = broker_factory("--num-partitions", "5", "--auto-create-topics-enable", "true",
                       config=cfg, name="override")
    d = kc.Deliveries()
    p = kc.producer(b.bootstrap, acks="all")
    kc.produce(p, "override-auto", b"v", d)
    kc.flush(p)
    d.assert_no_errors()
    kc.wait_for_topic(b.bootstrap, "override-auto", 5)


def test_invalid_config_value_exits_nonzero(tern_bin, tmp_path):
    cfg = tmp_path / "bad.properties"
    port = free_port()
    cfg.write_text(f"listeners=PLAINTEXT://127.0.0.1:{port}\n"
                   f"log.dirs={tmp_path / 'bad-data'}\n"
                   "num.partitions=abc\n")
    res = _run_serve(tern_bin, ["--config", str(cfg)], tmp_path)
    assert res.returncode != 0, f"exit code 0 for num.partitions=abc; stderr: {res.stderr}"
    assert "num.partitions" in res.stderr, f"error does not name the key: {res.stderr!r}"


def test_invalid_flag_value_exits_nonzero(tern_bin, tmp_path):
    port = free_port()
    res = _run_serve(tern_bin, ["--listeners", f"PLAINTEXT://127.0.0.1:{port}",
                                "--log-dirs", str(tmp_path / "flag-data"),
                                "--num-partitions", "abc"], tmp_path)
    assert res.returncode != 0, f"exit code 0 for --num-partitions abc; stderr: {res.stderr}"
    assert "num-partitions" in res.stderr or "num.partitions" in res.stderr, res.stderr


def test_invalid_boolean_in_config_exits_nonzero(tern_bin, tmp_path):
    cfg = tmp_path / "bad-bool.properties"
    port = free_port()
    cfg.write_text(f"listeners=PLAINTEXT://127.0.0.1:{port}\n"
                   f"log.dirs={tmp_path / 'bad-bool-data'}\n"
                   "auto.create.topics.enable=maybe\n")
    res = _run_serve(tern_bin, ["--config", str(cfg)], tmp_path)
    assert res.returncode != 0, f"exit code 0 for auto.create.topics.enable=maybe: {res.stderr}"
    assert "auto.create.topics.enable" in res.stderr, res.stderr

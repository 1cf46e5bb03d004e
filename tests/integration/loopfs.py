"""A small loop-mounted ext4 for disk-full tests (test_17_disk_full.py,
test_17_cluster_disk_full.py), and ballast files that fill it.

`mounted(tmp_path, size)` makes an image file of `size` bytes under tmp_path, formats it, mounts
it on tmp_path/mnt and yields that path; on exit it unmounts it (retrying while a process that
was just killed still holds it, then lazily) and detaches the loop device, also when the test
failed. Skips the test without root or without the tools, or when the kernel refuses the loop
mount. Every call is bounded in time.
"""

import contextlib
import errno
import mmap
import os
import shutil
import subprocess
import time

import pytest

MIB = 1 << 20


def _run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _loop_devices(img):
    out = subprocess.run(["losetup", "-j", str(img)], capture_output=True, text=True,
                         timeout=30).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def mounted(tmp_path, size):
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop mount")
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    img = tmp_path / "disk.img"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    _run("truncate", "-s", str(size), str(img))
    _run("mkfs.ext4", "-q", "-F", str(img))
    try:
        _run("mount", "-o", "loop", str(img), str(mnt))
    except subprocess.CalledProcessError as e:
        for dev in _loop_devices(img):
            subprocess.run(["losetup", "-d", dev], timeout=30)
        pytest.skip(f"loop mount not available: {e.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        # Whatever used the file system (a broker) must be gone before this runs.
        for _ in range(20):
            if subprocess.run(["umount", str(mnt)], capture_output=True,
                              timeout=30).returncode == 0:
                break
            time.sleep(0.25)
        else:
            subprocess.run(["umount", "-l", str(mnt)], timeout=30)
        for dev in _loop_devices(img):
            subprocess.run(["losetup", "-d", dev], timeout=30)


def free_bytes(path):
    """Bytes available to unprivileged users on the file system of `path` (as the broker's
    statvfs reads it)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def write_ballast(path, nbytes):
    """Writes `nbytes` (rounded down to whole MiB) to `path` and fsyncs it."""
    block = b"\xa5" * MIB
    with open(path, "wb") as f:
        for _ in range(nbytes // MIB):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())



def fill_until_enospc(path):
    """Writes to `path` until the file system refuses (ENOSPC: root's reserved blocks too,
    since the tests run as root like the broker) and returns the bytes written. Buffered
    writes stop early (ext4 keeps a margin for delayed allocation), so O_DIRECT writes, as the
    broker's, take what is left, down to 512-byte pieces."""
    block = b"\x5a" * (64 << 10)
    written = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
            if not n:
                break
            written += n
        os.fsync(f.fileno())
    fd = os.open(str(path) + ".direct", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        for size in (64 << 10, 4096, 512):
            buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
            buf.write(b"\x5a" * size)
            while True:
                try:
                    n = os.write(fd, buf)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                if n < size:
                    break
                written += n
            buf.close()
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def remove_filler(path):
    """Removes what `fill_until_enospc(path)` wrote."""
    for p in (str(path), str(path) + ".direct"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)

"""Writing results never destroys anything (issue 22 §1): outputs that are devices, FIFOs, sockets or
folders are refused before any work; lock and temp files never follow symlinks; distinct outputs never
share a results folder; Ctrl-C is exit 130 with nothing half-written; a full disk keeps the earlier
result and its records consistent."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shiftkit import checkpoints
from shiftkit._files import OutputError, check_output, claim_output
from shiftkit.checkpoints import atomic_write, atomic_write_json
from shiftkit.cli import main
from shiftkit.cli._common import from_flags
from shiftkit.config import parse_experiment
from shiftkit.experiment import claim_run_outputs, run_experiment


def _specials(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a folder and a socket (and a character device where mknod is allowed) named like outputs."""
    made = {"fifo": tmp_path / "fifo.safetensors", "folder": tmp_path / "folder.safetensors",
            "socket": tmp_path / "sock.safetensors"}
    os.mkfifo(made["fifo"])
    made["folder"].mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(made["socket"]))
    s.close()
    try:
        os.mknod(tmp_path / "null.safetensors", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made["device"] = tmp_path / "null.safetensors"
    except (PermissionError, OSError):
        pass
    return made


def _kind(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


def test_atomic_write_never_replaces_a_special_file(tmp_path):
    for name, path in _specials(tmp_path).items():
        before = _kind(path)
        with pytest.raises(OutputError, match="not a regular file; refusing to replace it") as e:
            atomic_write(path, b"data")
        assert str(path) in str(e.value) and _kind(path) == before, name
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_outputs_that_are_special_files_are_refused_before_any_work(tmp_path, capsys, trained):
    for name, path in _specials(tmp_path).items():
        before = _kind(path)
        # --root does not exist: an error about the output (not the data) means it was checked first
        for argv in (["train", "--root", str(tmp_path / "no-data"), "--out", str(path)],
                     ["export", trained["checkpoint"], "--out", str(path)],
                     ["prune", trained["checkpoint"], "--root", str(tmp_path / "no-data"), "--out", str(path)]):
            with pytest.raises(SystemExit) as e:
                main(argv)
            err = capsys.readouterr().err
            assert e.value.code == 2 and len(err.splitlines()) == 1 and str(path) in err, (name, argv, err)
            assert "not a regular file" in err and _kind(path) == before


def test_a_lock_file_symlink_never_touches_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "m.safetensors"
    (tmp_path / ".m.safetensors.lock").symlink_to(victim)
    with pytest.raises(OutputError, match="lock file is a symbolic link"):
        atomic_write(out, b"x")
    assert victim.read_text() == "precious\n" and not out.exists()
    os.mkfifo(tmp_path / ".f.json.lock")
    with pytest.raises(OutputError, match="lock file is a FIFO"):
        atomic_write(tmp_path / "f.json", b"x")


def test_stale_lock_and_temp_files_of_a_killed_save_are_reused_and_removed(tmp_path):
    out = tmp_path / "m.safetensors"
    (tmp_path / ".m.safetensors.lock").write_text("99999999\n")  # a killed run's lock: no process holds it
    stale = [tmp_path / ".m.safetensors.abc123_x.tmp", tmp_path / ".m.safetensors.zzzzzzzz.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    other = tmp_path / ".m.safetensors.other.tmp"  # not a name atomic_write makes: left alone
    other.write_bytes(b"keep")
    link = tmp_path / ".m.safetensors.linklink.tmp"
    victim = tmp_path / "victim"
    victim.write_text("v")
    link.symlink_to(victim)  # a symlink named like a temp file: not removed through, not followed
    atomic_write(out, b"new")
    assert out.read_bytes() == b"new" and not any(p.exists() for p in stale)
    assert other.exists() and victim.read_text() == "v"


def test_interrupt_while_writing_leaves_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    atomic_write_json(out, {"v": 1})

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(out, {"v": 2})
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"v": 1} and not list(tmp_path.glob(".r.json.*.tmp"))


def test_results_folders_of_distinct_model_files_never_clash(tmp_path):
    outs = {s: from_flags("train", out=str(tmp_path / "d" / s)).out for s in ("m.v1", "m.v2", "model", "m.safetensors")}
    assert outs["m.safetensors"] == str(tmp_path / "d" / "m")  # the usual case is unchanged
    assert len(set(outs.values())) == 4 and outs["model"] == str(tmp_path / "d" / "model.results")
    for s, out in outs.items():
        assert out != str(tmp_path / "d" / s)


@pytest.mark.parametrize("case", ["same path", "model inside", "folder in the way", "file as folder", "name too long",
                                  "out is a file", "transfer state folder is a file"])
def test_the_whole_output_set_is_checked_before_training(tmp_path, case):
    d = tmp_path / "d"
    d.mkdir()
    raw = {"out": str(d / "r"), "save": str(d / "m.safetensors")}
    if case == "same path":
        raw["save"] = raw["out"]
    elif case == "model inside":
        raw["out"] = str(d / "m.safetensors" / "r")
    elif case == "folder in the way":
        (d / "r" / "result.json").mkdir(parents=True)
    elif case == "file as folder":
        (d / "f").write_text("a file")
        raw["save"] = str(d / "f" / "m.safetensors")
    elif case == "name too long":
        raw["save"] = str(d / ("m" * 240 + ".safetensors"))  # fits 255, not with the temp suffix
    elif case == "out is a file":
        (d / "r").write_text("a file")
    elif case == "transfer state folder is a file":
        raw["method"] = {"kind": "transfer"}
        (d / "r").mkdir()
        (d / "r" / "transfer").write_text("a file")
    exp = parse_experiment(raw)
    with pytest.raises(OutputError) as e:
        claim_run_outputs(exp)
    assert str(d) in str(e.value) and len(str(e.value).splitlines()) == 1
    assert not (d / "r" / "experiment.json").exists()


def test_an_unwritable_folder_is_named_before_training(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anywhere: stand in for a read-only mount
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and Path(p) != ro)
    try:
        with pytest.raises(OutputError, match=f"{ro}/x.json: cannot write output file: folder {ro} is not writable"):
            check_output(ro / "x.json")
        exp = parse_experiment({"out": str(ro / "r")})
        with pytest.raises(OutputError, match="is not writable"):
            claim_run_outputs(exp)
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("target", ["result.json", "model.safetensors"])
def test_full_disk_keeps_the_earlier_result_and_its_records(tmp_path, monkeypatch, fmnist_root, target):
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    raw = {"budget": {"epochs": 1}, "model": {"kwargs": {"width": 4}}, "out": str(tmp_path / "r"), "eval": {"domains": False}}
    run_experiment(parse_experiment(raw), progress=False)
    names = ("experiment.json", "result.json", "timing.json", "model.safetensors")
    before = {n: (tmp_path / "r" / n).read_bytes() for n in names}
    write = checkpoints._write_temp

    def full(path, data):
        if path.name == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, data)

    monkeypatch.setattr(checkpoints, "_write_temp", full)
    with pytest.raises(OutputError, match=rf"{target}: cannot write \(No space left on device\)"):
        run_experiment(parse_experiment({**raw, "seed": 1}), progress=False)
    after = {n: (tmp_path / "r" / n).read_bytes() for n in names}
    assert after == before  # the records, the result and the model all still describe the first run
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_interrupt_in_the_cli_is_exit_130_with_one_line(monkeypatch, capsys):
    import shiftkit.experiment

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(shiftkit.experiment, "run_experiment", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "1"])
    assert e.value.code == 130 and capsys.readouterr().err.strip().splitlines()[-1] == "shiftkit: interrupted"


def test_ctrl_c_during_train_exits_130_and_leaves_nothing_half_written(tmp_path, fmnist_root):
    out = tmp_path / "d" / "m.safetensors"
    env = {**os.environ, "SHIFTKIT_DATA": str(fmnist_root), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.Popen([sys.executable, "-m", "shiftkit", "train", "--epochs", "200", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lock = out.parent / ".m.safetensors.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and p.poll() is None and time.monotonic() < deadline:  # claimed at start: it is running
        time.sleep(0.1)
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "shiftkit: interrupted" and "Traceback" not in err
    left = [q.name for q in out.parent.rglob("*") if q.name.endswith((".tmp", ".lock"))]
    assert left == [] and not out.exists()


def test_bench_outputs_are_checked_before_any_work(tmp_path, capsys):
    fifo = _specials(tmp_path)["fifo"]
    for argv in (["bench", "data-speed", "--out", str(fifo)], ["bench", "prune", "--results", str(fifo)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.splitlines()) == 1 and str(fifo) in err and _kind(fifo) == stat.S_IFIFO


def test_a_zoo_folder_that_is_a_file_is_refused_before_training(tmp_path):
    from shiftkit.experiment import prepare

    (tmp_path / "zoo").write_text("a file\n")
    exp = parse_experiment({"method": {"kind": "transfer", "zoo": str(tmp_path / "zoo")}})
    with pytest.raises(OutputError, match="zoo folder .method.zoo. exists and is not a folder"):
        prepare(exp, domains=[object(), object(), object()])
    assert (tmp_path / "zoo").read_text() == "a file\n"


def test_report_plots_never_write_through_a_symlink(tmp_path):
    from shiftkit.report import write_report

    res = tmp_path / "res"
    res.mkdir()
    rows = [{"method": m, "sparsity": sp, "clean": 0.5, "shifted": 0.4, "seed": 0} for m in ("a", "b") for sp in (0.5, 0.9)]
    (res / "bench.json").write_text(json.dumps({"rows": rows}))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (res / "prune_accuracy_vs_sparsity.png").symlink_to(victim)
    write_report(res)
    assert victim.read_text() == "precious\n"
    png = res / "prune_accuracy_vs_sparsity.png"
    assert not png.is_symlink() and png.read_bytes()[:4] == b"\x89PNG"


def test_benchmark_table_lock_and_logs_never_write_through_links_or_into_fifos(tmp_path):
    from shiftkit.bench._results import append_jsonl, update_section

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    md = tmp_path / "RESULTS.md"
    (tmp_path / "RESULTS.md.lock").symlink_to(victim)
    with pytest.raises(OutputError, match="lock file is a symbolic link"):
        update_section("s", "body", path=md)
    assert victim.read_text() == "precious\n" and not md.exists()
    os.mkfifo(tmp_path / "runs.jsonl")
    with pytest.raises(OutputError, match="runs.jsonl: log file is a FIFO"):
        append_jsonl(tmp_path / "runs.jsonl", {"a": 1})

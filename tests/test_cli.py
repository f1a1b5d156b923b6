import json
import subprocess
import sys

import pytest

from shiftkit.cli import main


def _run(args, env_root, capsys, monkeypatch):
    monkeypatch.setenv("SHIFTKIT_DATA", str(env_root))
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_train_then_eval(tmp_path, fmnist_root, capsys, monkeypatch):
    ckpt = tmp_path / "m.safetensors"
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    main(["train", "--model", "small_cnn", "--dataset", "driftfmnist", "--domain", "0", "--epochs", "1", "--out", str(ckpt)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["domain"] == "bin0" and 0 <= line["test"]["accuracy"] <= 1 and ckpt.exists()
    main(["eval", str(ckpt), "--dataset", "driftfmnist"])
    out = capsys.readouterr().out
    assert "bin7" in out and "accuracy" in out


def test_user_errors_are_one_line_exit_2(tmp_path, fmnist_root, capsys, monkeypatch):
    code, _, err = _run(["train", "--model", "resnet21", "--out", str(tmp_path / "x")], fmnist_root, capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "unknown model 'resnet21'" in err and "Traceback" not in err
    code, _, err = _run(["eval", str(tmp_path / "none.safetensors")], fmnist_root, capsys, monkeypatch)
    assert code == 2 and "none.safetensors" in err


def test_models_and_data_commands(fmnist_root, capsys, monkeypatch):
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    main(["models"])
    assert "resnet20" in capsys.readouterr().out
    main(["data", "driftfmnist"])
    assert "bin7" in capsys.readouterr().out


def test_console_script_help_shows_an_example():
    out = subprocess.run([sys.executable, "-m", "shiftkit", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Example: shiftkit train" in out.stdout


def test_threads_default_is_one_and_applies_before_torch_is_imported():
    """--threads 1 by default (measured the fast choice on a busy machine); set without importing torch."""
    import subprocess
    import sys

    probe = ("import importlib, sys; app = importlib.import_module('shiftkit.cli.app'); "
             "app._root(threads=1, version=False); "
             "assert 'torch' not in sys.modules; import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    default = probe.replace("threads=1", "threads=None")
    out = subprocess.run([sys.executable, "-c", default], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "1"  # no environment setting: one thread
    out = subprocess.run([sys.executable, "-c", default], capture_output=True, text=True, check=True,
                         env={**env, "OMP_NUM_THREADS": "2"}).stdout
    assert out.strip() == "2"  # the user's OMP_NUM_THREADS wins over the default
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**env, "OMP_NUM_THREADS": "2"}).stdout
    assert out.strip() == "1"  # an explicit --threads wins over both
    from typer.testing import CliRunner

    from shiftkit.cli import app
    assert "else 1" in CliRunner().invoke(app, ["--help"]).output.replace("\n", " ")

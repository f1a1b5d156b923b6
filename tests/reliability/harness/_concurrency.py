"""Concurrent benchmark writers: processes updating sections of one RESULTS.md and rewriting one
JSON result at once, while a reader watches. Nothing may be lost (every writer's last section is
there, exactly once) and no reader may ever see a partial file."""
from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

from shiftkit.bench._results import update_section, write_result

from ._proc import child_env

__all__ = ["concurrent_writers", "racing_runs"]


def _writer(wid: int, md: str, js: str, rounds: int) -> None:
    for r in range(rounds):
        update_section(f"writer-{wid}", f"## writer {wid}\n\nround {r}\n" + "x" * (97 * (wid + 1)), path=Path(md))
        write_result(js, {"writer": wid, "round": r, "payload": list(range(200 * (wid + 1)))})


def _reader(md: str, js: str, stop, out) -> None:
    """Read both files as fast as possible; count reads and any partial / unparsable content."""
    reads, bad = 0, []
    while not stop.is_set():
        for path in (md, js):
            try:
                text = Path(path).read_text()
            except FileNotFoundError:
                continue
            reads += 1
            if path == js:
                try:
                    obj = json.loads(text)
                    assert len(obj["payload"]) == 200 * (obj["writer"] + 1)
                except Exception as e:  # noqa: BLE001  (a partial file is what this looks for)
                    bad.append(f"{Path(path).name}: {type(e).__name__}")
            elif not text.startswith("# shiftkit") or text.count(":begin -->") != text.count(":end -->"):
                bad.append(f"{Path(path).name}: partial markdown")
    out.put((reads, bad[:10]))


def concurrent_writers(folder: Path, *, writers: int = 4, rounds: int = 25) -> dict:
    """`writers` processes x `rounds` updates to one RESULTS.md and one JSON result, plus a reader."""
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "RESULTS.md", folder / "result.json"
    ctx = mp.get_context("fork")  # the workers only touch files; fork keeps start-up cheap
    stop, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(str(md), str(js), stop, out))
    reader.start()
    procs = [ctx.Process(target=_writer, args=(w, str(md), str(js), rounds)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    stop.set()
    reads, bad = out.get(timeout=60)
    reader.join(30)
    text = md.read_text()
    lost = [w for w in range(writers) if text.count(f"<!-- writer-{w}:begin -->") != 1
            or f"round {rounds - 1}\n" not in text.split(f"<!-- writer-{w}:begin -->")[1].split(f"<!-- writer-{w}:end -->")[0]]
    final = json.loads(js.read_text())
    temps = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    return {"writers": writers, "updates": writers * rounds * 2, "reads_checked": reads, "partial_reads": bad,
            "sections_lost": lost, "json_ok": final["round"] == rounds - 1, "temp_files_left": temps,
            "writer_exit_codes": [p.exitcode for p in procs]}


_EXPERIMENT = """data: {{name: image_folder, root: {root}, seed: 0, domain: 0}}
model: {{name: small_cnn, kwargs: {{width: 4}}}}
method: {{kind: train}}
budget: {{epochs: 2, lr: 0.001, batch_size: 8}}
seed: 0
out: {out}
"""


def racing_runs(folder: Path, *, pairs: int = 3, timeout: float = 300) -> dict:
    """Two `shiftkit run` processes started together on one output folder, `pairs` times: one must
    finish, the other must stop with one error line about the output (an advisory lock) — never both
    exit 0 with the last writer silently winning."""
    from .inputs import valid_inputs

    images = valid_inputs(folder / "valid")["folder"]
    outcomes, lines = [], []
    for i in range(pairs):
        cfg = folder / f"race{i}.yaml"
        out = folder / f"out{i}"
        cfg.write_text(_EXPERIMENT.format(root=images, out=out))
        procs = [subprocess.Popen([sys.executable, "-m", "shiftkit", "run", str(cfg)], cwd=folder, text=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(OMP_NUM_THREADS="1"))
                 for _ in range(2)]
        results = [(p.wait(timeout), p.stderr.read()) for p in procs]
        codes = sorted(rc for rc, _ in results)
        loser = [err.strip().splitlines() for rc, err in results if rc != 0]
        refused = (codes[0] == 0 and codes[1] != 0 and len(loser[0]) == 1 and "another process" in loser[0][0]
                   and str(out) in loser[0][0] and (out / "result.json").is_file())
        outcomes.append("refused" if refused else "both finished" if codes == [0, 0] else f"exit codes {codes}")
        lines += [line for err in loser for line in err[-1:]]
    return {"pairs": pairs, "outcomes": outcomes, "refused": outcomes.count("refused"), "stderr": lines[:3]}

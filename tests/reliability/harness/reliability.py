"""Reliability harness: kill-anywhere resume, hostile checkpoints, issue 13's hostile-input classes through
the CLI, fuzzed datasets, bad options, concurrent writers — counted, and written to
benchmarks/RELIABILITY.md with the command (`make reliability` = `python -m tests.reliability.harness`).

Each part lives in a module beside this one: _crash.py / _crash_prune.py (SIGKILL + resume, children
forked by _zygote.py), _hostile.py (checkpoints), _classes.py + inputs.py (issue 13's classes, each
check a `python -m shiftkit` process), _fuzz.py (datasets), _badopts.py (API and CLI options),
_concurrency.py (benchmark result writers, and two runs claiming one output), _outputs.py (issue 22's
output classes: special files, symlinked locks, clashing outputs, Ctrl-C; hostile YAML, grids, report inputs),
_silent.py (issue 22's silently wrong results and allocation caps: divergence, NaN/Inf logits, models meeting
other data, out-of-range values, resume, wide-range pixels).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from shiftkit.checkpoints import atomic_write

__all__ = ["run", "render_markdown", "write_markdown", "failed", "BUGS_FIXED"]

# What these checks found in the library, each fixed where it lived and kept as a regression test.
BUGS_FIXED = [
    ("data/idx.py", "a corrupt deflate stream escaped read_idx as zlib.error", "fuzz (IDX)"),
    ("data/idx.py", "read_idx decompressed the whole file before checking sizes: a small .gz bomb or a lying "
                    "header could take any amount of memory; now reads the header, then at most the claimed bytes",
     "fuzz (IDX), gzip bomb"),
    ("data/cifar.py", "a non-UTF-8 class name in batches.meta escaped as UnicodeDecodeError", "fuzz (CIFAR)"),
    ("data/_images.py", "PIL picks the decoder from the bytes, not the extension: a DDS file named .png escaped as "
                        "NotImplementedError; any decoder failure is now the file's DataError", "fuzz (images)"),
    ("data/_images.py", "an 11 kB PNG claiming 9500x9500 pixels was decoded (PIL only warns below 2x its bomb "
                        "limit); now refused from the header, before any pixel is allocated", "fuzz (images), bomb"),
    ("checkpoints.py", "import_pt raised IndexError on an empty .pt (its own error message had no first line)",
     "hostile checkpoints"),
    ("checkpoints.py", "LazyCheckpoint.shape of an unknown tensor let SafetensorError escape", "hostile checkpoints"),
    ("checkpoints.py", "a refused pickle's message repeated torch's advice to retry with weights_only=False; "
                       "it now names the blocked global", "hostile checkpoints, CLI"),
    ("checkpoints.py + cli.py, _cli_prune.py, _cli_transfer.py", "garbage 'config' metadata in a checkpoint crashed "
     "eval / prune / transfer with a JSONDecodeError traceback; model_from_checkpoint raises CheckpointError",
     "bad options (CLI)"),
    ("transfer/base.py", "resume on a state file that is not a transfer state (no / garbled transfer_log) crashed "
                         "with KeyError / JSONDecodeError / TypeError; now CheckpointError naming the file", "crash safety"),
    ("transfer/base.py", "a bad source was found only when its turn came, after hours of merging the earlier ones; "
                         "run_sources validates every source first", "bad options"),
    ("transfer/zoo.py", "a corrupt zoo.json escaped as JSONDecodeError; now ConfigError naming it", "bad options"),
    ("cli.py", "every usage error (unknown option, bad value) printed a traceback: typer vendors click, so "
               "click's exception types never matched; now one line, exit 2", "bad options (CLI)"),
    ("cli.py, _cli_transfer.py, _cli_prune.py", "--target / --domain out of range crashed with IndexError; now "
     "ConfigError listing the domains", "bad options (CLI)"),
    ("cli.py", "warnings printed as two-line file:line blocks; the CLI prints each as one line", "bad options (CLI)"),
    ("checkpoints.py (model_spec, model_from_checkpoint)", "config metadata with a negative / huge / "
     "non-integer class count or width, or JSON nested 100,000 deep, reached torch (or RecursionError); now "
     "bounded JSON, validated values, and the model is built on the meta device and compared with the file's "
     "declared shapes before anything is allocated", "issue 13 (config)"),
    ("checkpoints.py (LazyCheckpoint)", "a zero-size tensor with a 2^63 dimension overflowed in reshape; shapes "
     "are checked from the header", "issue 13 (shape)"),
    ("_files.py + every reader", "a FIFO named *.pt made inspect / import wait forever; one regular-file check "
     "(O_NONBLOCK open + fstat) before every open of a user file", "issue 13 (special files)"),
    ("_pt.py", ".pt stride-0 views of a tiny storage, zip bombs and allocating pickles (bytearray(3 GiB), "
     "torch.LongTensor(n)) took 10-40 GB; zip directory and pickle opcodes are checked statically, zips are "
     "memory-mapped, views must fit their storage", "issue 13 (.pt)"),
    ("data/cifar.py", "a few dozen bytes of pickle built 3 GiB through an allowed global; each allowed global "
     "now refuses to build more than the pickle's size", "issue 13 (CIFAR)"),
    ("data/_images.py, data/folders.py, metrics.py", "a non-UTF-8 domain folder failed at save time after "
     "training; a single-class dataset failed in torchmetrics; both refused at load", "issue 13 (folders)"),
    ("_files.py + checkpoints.atomic_write", "two runs writing one output both exited 0, the last writer "
     "silently winning; an advisory lock per output, held until exit; outputs follow the umask (were 0600)",
     "issue 13 (racing runs), issue 15"),
    ("bench/prune.py + bench/_results.py", "a sweep killed mid-append left a torn JSONL line that made every "
     "resume crash; read_jsonl drops it, append_jsonl is one fsync'ed O_APPEND write", "crash safety (pruning sweep)"),
    ("_files.py + checkpoints.atomic_write", "`export --out /dev/null` replaced the device node with a regular file (the "
     "final rename went over it); a lock file symlinked to a victim truncated it; outputs are checked before any "
     "work (devices, FIFOs, sockets, folders refused), the rename re-checks, locks are opened O_NOFOLLOW", "issue 22 (outputs)"),
    ("cli/_common.py (from_flags), experiment.py", "`--out d/m.v1` and `d/m.v2` shared the results folder d/m; "
     "`--out d/model` made the results folder the model's own path and died after training; the whole output "
     "set is checked and claimed before training", "issue 22 (outputs)"),
    ("experiment.py + checkpoints.atomic_write_many", "a failed write left experiment.json describing a run whose "
     "result.json was the earlier one; the three files are committed together at the end", "issue 22 (full disk)"),
    ("cli/_common.py", "Ctrl-C exited 0 with no message (typer's returned 130 was dropped); now exit 130, "
     "`shiftkit: interrupted`", "issue 22 (interrupt)"),
    ("sweep.py", "grid values whose slugs read alike (`X/a-b`, `X/a/b`) shared one folder; a 27-million point grid "
     "was built before being counted", "issue 22 (sweep)"),
    ("config.py", "a 1.6 kB YAML alias bomb took gigabytes through error messages and dump; duplicate keys silently "
     "took the last value; every error re-parsed the file with the pure-Python loader", "issue 22 (YAML)"),
    ("report.py, sweep.py, transfer/zoo.py, prune/structured.py", "report / sweep / zoo / structured-pruning JSON was "
     "read without the bounded reader: a FIFO hung, /dev/zero blew up, deep or odd-shaped JSON crashed; `report` "
     "on a missing folder created it", "issue 22 (readers)"),
    ("data/tinyimagenet.py", "the duplicate check of wnids.txt was quadratic (list.count per line)", "issue 22 (readers)"),
    ("train.py + checkpoints.save_checkpoint", "`train --lr 1e6` trained to NaN, saved NaN weights and printed accuracy "
     "0.0 as a result; fit checks loss and weights once per epoch (DivergedError naming the epoch, or keep_best), "
     "save_checkpoint refuses NaN/Inf", "issue 22 (divergence)"),
    ("train.evaluate + experiment.py + cli eval", "finite but huge weights gave NaN logits and a normal-looking "
     "table; the metrics are marked invalid and the table / result say so", "issue 22 (invalid scores)"),
    ("_compat.py (experiment.py, api.py)", "a 3-class or RGB checkpoint on 10-class grayscale data gave garbage "
     "or a torch traceback; one check of classes / channels (and a one-image forward) where a model meets data",
     "issue 22 (model vs data)"),
    ("data/_pixels.py (data/_images.py, data/idx.py)", "16-bit PNGs clipped at 255, float TIFFs read black, float / "
     "wide-int IDX cast to uint8; converted by their real range or refused naming the file", "issue 22 (decoding)"),
    ("config.py, models/_factory.py, prune/structured.py, prune/pruner.py, cli", "negative few-shot used as a slice end, "
     "NaN/inf learning rates, 2^64 seeds, width 0 / 1e8, a 1e-9 structured step, 1e9 pruning rounds, a [1,3,60000,"
     "60000] input_shape: range-checked or capped before allocating", "issue 22 (ranges, caps)"),
    ("transfer/_resume.py, experiment.prepare", "`transfer --resume` with another --few-shot reused the old model; "
     "`sources --out <zoo>` with other settings showed the old zoo; resume compares config and target data, "
     "sources refuses", "issue 22 (resume)"),
]


def _section(name: str, fn, log) -> tuple[dict, float]:
    log(f"== {name}")
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 1)


def run(*, kills: int = 24, prune_kills: int = 20, fuzz_per_format: int = 300, hostile_cli_per_kind: int = 3,
        jobs: int = 2, seed: int = 0, work: Path | None = None, log=print) -> dict:
    """Every reliability check with the given counts; returns the report (counts, failures, seconds)."""
    from shiftkit import transfer
    from ._badopts import make_fixtures, run_api_cases, run_cli_case, run_cli_cases
    from ._classes import run_classes
    from ._concurrency import concurrent_writers, racing_runs
    from ._crash import crash_campaign
    from ._crash_prune import prune_campaign
    from ._fuzz import run_fuzz
    from ._hostile import check_hostile, check_hostile_cli
    from ._outputs import run_outputs
    from ._silent import run_silent
    from ._zygote import Zygote
    from ._tiny import tiny_domains, tiny_net

    torch.set_num_threads(1)
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="shiftkit-reliability-")) if own else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    report, seconds = {"seed": seed}, {}
    zygote = Zygote(work)
    cli = lambda argv: run_cli_case(argv, cwd=work)  # noqa: E731  (`python -m shiftkit`, as a user runs it)
    try:
        report["crash_transfer"], seconds["crash_transfer"] = _section("kill-anywhere: multi-source transfer", lambda: crash_campaign(
            work / "crash", kills=kills, seed=seed, methods=("grasp", "task_arithmetic"), log=log, zygote=zygote), log)
        report["crash_prune"], seconds["crash_prune"] = _section("kill-anywhere: pruning sweep", lambda: prune_campaign(
            work / "crash_prune", zygote, kills=prune_kills, seed=seed, log=log), log)
        target, runs = tiny_domains(2)[1], iter(range(1 << 30))
        report["hostile"], seconds["hostile"] = _section("hostile checkpoints", lambda: check_hostile(
            work / "hostile", merger_factory=lambda: transfer.create(
                "grasp", tiny_net(2), target, run_dir=work / "hostile" / f"run{next(runs)}", initial_epochs=0)), log)
        report["hostile_cli"], seconds["hostile_cli"] = _section("hostile checkpoints: CLI import / eval", lambda: check_hostile_cli(
            work / "hostile_cli", cli, limit=hostile_cli_per_kind), log)
        report["classes"], seconds["classes"] = _section("issue 13's hostile-input classes through the CLI",
                                                          lambda: run_classes(work / "classes", jobs=jobs, log=log), log)
        report["fuzz"], seconds["fuzz"] = _section("fuzzed datasets", lambda: run_fuzz(
            work / "fuzz", per_format=fuzz_per_format, seed=seed), log)
        fixtures = make_fixtures(work / "badopts")
        report["bad_options_api"], seconds["bad_options_api"] = _section("bad options: API", lambda: run_api_cases(fixtures), log)
        report["bad_options_cli"], seconds["bad_options_cli"] = _section(
            "bad options: CLI through `python -m shiftkit`", lambda: run_cli_cases(
                fixtures, runner=lambda argv: run_cli_case(argv, cwd=work / "badopts")), log)
        report["concurrency"], seconds["concurrency"] = _section("concurrent result writers", lambda: concurrent_writers(
            work / "concurrency", writers=4, rounds=25), log)
        report["racing_runs"], seconds["racing_runs"] = _section("two runs writing one output", lambda: racing_runs(
            work / "racing"), log)
        report["outputs"], seconds["outputs"] = _section("issue 22: outputs, interrupts, hostile YAML / grids / report inputs",
                                                          lambda: run_outputs(work / "outputs"), log)
        report["silent"], seconds["silent"] = _section("issue 22: silently wrong results, allocation caps",
                                                        lambda: run_silent(work / "silent", log=log), log)
    finally:
        zygote.close()
        if own:
            shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = seconds
    report["summary"] = summarize(report)
    return report


def summarize(r: dict) -> dict:
    ct, cp, h, f = r["crash_transfer"], r["crash_prune"], r["hostile"], r["fuzz"]
    api, cli, cc, race, cl = r["bad_options_api"], r["bad_options_cli"], r["concurrency"], r["racing_runs"], r["classes"]
    lost = (ct["absorbs_lost"] + cp["records_lost"] + len(cc["sections_lost"]) + (not cc["json_ok"])
            + sum(not x["bitwise_equal"] for x in ct["per_run"]) + sum(not x["equal"] for x in cp["per_run"])
            + race["outcomes"].count("both finished"))
    problems = [x["problem"] for x in cl["failures"] if x["class"] != "print"]
    printing = [x["problem"] for x in cl["failures"] if x["class"] == "print"]
    return {
        "kills_survived": ct["kills"] + cp["kills"], "kills_transfer": ct["kills"], "kills_prune_sweep": cp["kills"],
        "resumes_bitwise_equal": ct["all_bitwise_equal"] and cp["all_records_equal"],
        "partial_files_accepted": ct["partial_files_accepted"] + cp["partial_files_accepted"],
        "hostile_files": h["files"], "hostile_reader_checks": h["reader_checks"] + r["hostile_cli"]["cli_checks"],
        "hostile_accepted": len(h["failures"]) + len(r["hostile_cli"]["failures"]),
        "code_executed": h["code_executed"],
        "class_inputs": sum(c["inputs"] for c in cl["per_class"].values()), "class_checks": cl["checks"],
        "class_failures": len(problems), "class_tracebacks": sum(p.startswith("traceback") for p in problems),
        "class_hangs": sum(p.startswith("hang") for p in problems),
        "class_blowups": sum(p.startswith("memory") for p in problems),
        "print_failures": len(printing),
        "fuzz_inputs": f["inputs"], "fuzz_failures": len(f["failures"]),
        "bad_options": api["cases"] + cli["cases"],
        "bad_option_failures": len(api["failures"]) + len(cli["failures"]),
        "concurrent_updates": cc["updates"], "partial_reads": len(cc["partial_reads"]),
        "racing_runs": race["pairs"], "racing_runs_refused": race["refused"], "data_lost": lost,
        "output_cases": r["outputs"]["cases"], "output_failures": len(r["outputs"]["failures"]),
        "silent_cases": r["silent"]["cases"], "silent_failures": len(r["silent"]["failures"]),
    }


def failed(s: dict) -> bool:
    """Whether any check failed (the printing class is reported apart: its fix lives in the CLI)."""
    counts = ("partial_files_accepted", "hostile_accepted", "class_failures", "fuzz_failures", "bad_option_failures",
              "partial_reads", "data_lost", "output_failures", "silent_failures")
    return any(s[k] for k in counts) or s["code_executed"] or not s["resumes_bitwise_equal"] \
        or s["racing_runs_refused"] != s["racing_runs"]


def _class_table(cl: dict) -> str:
    names = {"config": "rebuilt-model config metadata (sizes, types, nesting, lies)",
             "shape": "tensor shapes past 2^63 / zero-size overflow", "special_file": "FIFOs, sockets, devices, folders named *.pt",
             "pt": ".pt expanded views, zip bombs, allocating pickles", "cifar": "CIFAR pickles allocating through allowed globals",
             "folder": "non-UTF-8 folder names, single-class datasets", "print": "markup / deep values in printed text (CLI)"}
    rows = ["| class | inputs | commands | checks | failed | peak RSS per check (max) | max over its baseline | "
            "time per check (mean / max) |", "|---|---|---|---|---|---|---|---|"]
    for cls, c in cl["per_class"].items():
        rows.append(f"| {names.get(cls, cls)} | {c['inputs']} | {', '.join(c['commands'])} | {c['checks']} | "
                    f"{c['failures']} | {c['peak_mib']:.0f} MiB | {c['peak_over_baseline_mib']:+.0f} MiB | {c['mean_seconds']:.1f} / {c['max_seconds']:.1f} s |")
    return "\n".join(rows)


def render_markdown(r: dict, command: str) -> str:
    s, ct, cp, f = r["summary"], r["crash_transfer"], r["crash_prune"], r["fuzz"]
    ok = lambda good: "yes" if good else "**NO**"  # noqa: E731
    rows = [
        ("SIGKILLs survived (transfer: absorb / fine-tuning / checkpoint writing)",
         f"{ct['kills']} ({ct['kills_by_phase']['absorb']} / {ct['kills_by_phase']['finetune']} / {ct['kills_by_phase']['write']}) "
         f"over {ct['runs']} runs of {'+'.join(ct['methods'])}, {ct['sources']} sources"),
        ("SIGKILLs survived (pruning sweep: point / fine-tuning / result append)",
         f"{cp['kills']} ({cp['kills_by_phase']['absorb']} / {cp['kills_by_phase']['finetune']} / {cp['kills_by_phase']['write']}) "
         f"over {cp['runs']} sweeps of {cp['sweep_points']} points"),
        ("resumed runs bitwise equal to uninterrupted ones", ok(s["resumes_bitwise_equal"])),
        ("partially written files accepted", s["partial_files_accepted"]),
        ("torn sweep-log lines dropped on resume", cp["torn_lines_dropped"]),
        ("hostile checkpoint files / reader checks (API + CLI import, eval) / accepted", f"{s['hostile_files']} / {s['hostile_reader_checks']} / {s['hostile_accepted']}"),
        ("code executed by a .pt pickle", "**yes**" if s["code_executed"] else "no"),
        ("issue-13 hostile inputs / CLI checks (`python -m shiftkit`, one process each)", f"{s['class_inputs']} / {s['class_checks']}"),
        ("... tracebacks / hangs / memory blow-ups (> +1 GiB) / other failures (printing class apart)",
         f"{s['class_tracebacks']} / {s['class_hangs']} / {s['class_blowups']} / "
         f"{s['class_failures'] - s['class_tracebacks'] - s['class_hangs'] - s['class_blowups']}"),
        ("printing class (rich markup, deep values) failures", s["print_failures"]),
        ("fuzzed dataset inputs (IDX, CIFAR pickle p2 / p5, image folders, Tiny ImageNet, Yearbook)",
         f"{s['fuzz_inputs']} ({', '.join(f'{k}: {sum(v.values())}' for k, v in f['per_format'].items())})"),
        ("fuzz: non-shiftkit exceptions / hangs / crashes", s["fuzz_failures"]),
        ("bad options tried (API / CLI `python -m shiftkit`)",
         f"{s['bad_options']} ({r['bad_options_api']['cases']} / {r['bad_options_cli']['cases']})"),
        ("bad options without a clear one-line error", s["bad_option_failures"]),
        ("concurrent benchmark writes / partial reads seen", f"{s['concurrent_updates']} / {s['partial_reads']}"),
        ("two `shiftkit run` racing on one output: refused by the lock / both finished (silent loss)",
         f"{s['racing_runs_refused']} of {s['racing_runs']} / {r['racing_runs']['outcomes'].count('both finished')}"),
        ("issue-22 output / input cases (`python -m shiftkit`, one process each) / failed",
         f"{s['output_cases']} ({_per_class(r['outputs'])}) / {s['output_failures']}"),
        ("issue-22 silently-wrong / allocation cases (CLI processes + in-process decoding) / failed",
         f"{s['silent_cases']} ({_per_class(r['silent'])}) / {s['silent_failures']}"),
        ("**data lost**", f"**{s['data_lost']}**"),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    bugs = "\n".join(f"| `{where}` | {what} | {found} |" for where, what, found in BUGS_FIXED)
    cli_lines = "\n".join(f"- {name}: `{line}`" for name, line in list(r["bad_options_cli"]["stderr"].items())[:12])
    return f"""# shiftkit reliability

Generated by `{command}` (seed {r['seed']}; {sum(r['seconds'].values()):.0f} s on this machine) — `make reliability`
runs it from the repository root. The harness lives in `tests/reliability/harness/`, outside the installed
package; a part of it runs in the test suite: `pytest tests/reliability` (a few kills, a sample of each class).

| check | result |
|---|---|
{table}

## What is checked

- **Kill anywhere.** A child process runs a multi-source transfer (small_cnn width 4, 4 sources, GRASP and
  task arithmetic, which resume differently: from the state checkpoint / by replaying absorbs) or a pruning
  sweep (`bench.prune.run`, resumable through its JSON-lines log and cached dense checkpoints). It reports
  its phases; the harness SIGKILLs it at a random moment inside absorb (a sweep point), fine-tuning or a
  checkpoint / log write (written in slow chunks so the kill lands mid-write), checks that every file in
  the run dir loads or is a temp file resume ignores, resumes, and repeats; the finished run must equal an
  uninterrupted one bit for bit (weights and log; sweep records except timings). Children are forked from
  one process that imported the library once (`_zygote.Zygote`; it never imports the CLI).
- **Hostile checkpoints.** Truncations at 10 offsets, header length fields up to 2^64-1, non-UTF-8 /
  non-JSON / wrong-typed headers, offsets past the end, unknown dtypes, overflowing shapes; missing, extra,
  mis-shaped, transposed and wrong-dtype tensors, NaN / ±Inf in weights and BN buffers, wrong arch;
  `.pt` pickles whose `__reduce__` calls os.system / open / exec / eval (raw pickle and torch zip). Each is
  given to load_checkpoint, LazyCheckpoint (every tensor), import_pt, a GRASP merger's absorb and the CLI's
  `import` and `eval`: a CheckpointError (one stderr line) naming the file, the model and run dir unchanged,
  the marker file never created.
- **Fuzzed datasets.** A seeded mutator (bit flips, byte sets, truncation, insertion, deletion, chunk
  copies, 1/2/4-byte header field edits) over Fashion-MNIST IDX (gzip stream and payload), CIFAR-10
  pickles (protocol 2 and 5), image folders (PNG, JPEG, BMP, GIF, TIFF, WebP, PPM, and DDS / ICO / TGA
  behind common extensions; zero-byte files, emptied class folders, non-images, folders named like images),
  Tiny ImageNet (wnids / words / annotation text and JPEGs) and Yearbook trees (images, deleted and renamed
  files: no year, year 0000 / 9999). Loaded in a worker whose address space is
  capped at +{f['memory_cap_mib']} MiB, {f['timeout_s']:.0f} s per input: only ShiftkitError subclasses or valid loads.
- **Bad options.** τ outside [-1, 1] (and NaN), sparsity outside [0, 1), empty source lists, sources of
  another arch / class count / width, missing sources, damaged zoo manifests, unknown method / criterion /
  model / dataset / option names, bad values, garbage checkpoint metadata, out-of-range domains — from the
  API (ConfigError / CheckpointError) and the CLI (exit code != 0, exactly one stderr line, no traceback).
- **Concurrency.** {r['concurrency']['writers']} processes x {r['concurrency']['updates'] // r['concurrency']['writers'] // 2} rounds of `update_section` on one RESULTS.md and
  `write_result` on one JSON file while a reader checks every version it sees.

- **Issue 13's hostile-input classes**, written from the class descriptions (`harness/inputs.py`), each
  given to the commands a user would run on it, every check a fresh `python -m shiftkit` process with a
  {r['classes']['timeout_s']:.0f} s timeout; peak RSS from wait4, against the same command on a valid input
  (baselines: {', '.join(f'{k} {v:.0f}' for k, v in r['classes']['baseline_peak_mib'].items())} MiB).
  Pass: exit != 0, no traceback, one stderr line naming the file, no hang, peak < baseline + 1 GiB. The
  printing class may exit 0 (showing odd metadata of a valid file is right) but must not crash.

{_class_table(r['classes'])}

Failures: {'none' if not r['classes']['failures'] else ''}
{chr(10).join(f"- {x['class']} / {x['input']} / `{x['command']}`: {x['problem']}" for x in r['classes']['failures'])}

One error line per class (the last stderr line of one check):

{chr(10).join(f"- {k}: `{v}`" for k, v in _one_per_class(r['classes']['stderr']).items())}

- **Racing runs.** Two `shiftkit run` processes started together on one output folder, {r['racing_runs']['pairs']} times:
  one finishes, the other stops with one line (an advisory flock on `.NAME.lock` beside each output,
  held until exit): `{(r['racing_runs']['stderr'] or [''])[0]}`

- **Issue 22's outputs and inputs** (`harness/_outputs.py`), each a `python -m shiftkit` process: outputs
  that are FIFOs, sockets, character devices or folders (export, train, import, prune), lock files that
  are symlinks (to a victim, dangling) or FIFOs, results folders and model files that clash or would
  lie inside one another, a file where a folder goes, names too long once the lock / temp suffixes are
  added, sweep / report outputs in the way: exit 2, one line naming the path, what was there untouched,
  nothing created. SIGINT during `train`: exit 130, `shiftkit: interrupted`, no temp or lock file left.
  ENOSPC while writing a second run's result.json or model file: the first run's records, result and
  model unchanged. A killed save's temp files and lock: reused and removed by the next write.
  YAML alias bombs (9^9 values), duplicate and recursive keys, 80-deep nesting, huge values; a 27-million
  point grid; a results folder holding a FIFO, a link to /dev/zero, 100k-deep and unknown-shape JSON
  (skipped with a warning each, the report still written); grid values whose slugs read alike (one
  folder each). Failures: {'none' if not r['outputs']['failures'] else '; '.join(f"{x['case']}: {x['problem']}" for x in r['outputs']['failures'])}

- **Issue 22's silently wrong results and allocation caps** (`harness/_silent.py`), each a `python -m shiftkit`
  process: train / prune fine-tune / transfer / run with learning rates that overflow (exit 2, one line naming
  the epoch, no model file), checkpoints with finite but huge weights (eval and run say INVALID), 2-, 3-, 5-,
  12-class and RGB checkpoints on 10-class grayscale data and a grayscale one on RGB images (one line naming
  both), counts / sizes / rates / seeds out of range (one line naming the key), width 0 / 1e8, a 1e-9
  structured step, 1e9 pruning rounds and hostile structured input shapes (refused before allocating),
  `transfer --resume` with another few-shot / seed / lr and `sources` over a zoo built otherwise (one line
  naming what differs); in process, 16-bit PNG, float and int TIFF and float / wide-int IDX payloads decode
  by their range or are refused naming the file. Failures: {'none' if not r['silent']['failures'] else '; '.join(f"{x['case']}: {x['problem']}" for x in r['silent']['failures'])}

A few of the CLI's one-line errors:

{cli_lines}

## Bugs these checks found (fixed, each with a regression test in tests/reliability)

| where | what | found by |
|---|---|---|
{bugs}
"""


def _per_class(outputs: dict) -> str:
    return ", ".join(f"{k}: {v['cases']}" for k, v in outputs["per_class"].items())


def _one_per_class(lines: dict[str, str]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for key, line in lines.items():
        seen.setdefault(key.split(":", 1)[0], f"{key.split(': ', 1)[1]} -> {line}")
    return seen


def write_markdown(report: dict, path: Path, command: str) -> None:
    atomic_write(path, render_markdown(report, command).encode())

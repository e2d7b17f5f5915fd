"""`mgen batch --ray` on a Ray instance these tests start: 2 CPUs on loopback, tiny models.

The same files as a local batch; a worker killed mid-item or a driver killed mid-batch loses
and duplicates nothing; a worker loads each model of a mixed file once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import ray
import soundfile as sf
from cli_run import one_line_error, run_main

from musicgen_cli.engine.musicgen import GenerateSettings, resolve_model
from musicgen_cli.jobs import batchlog, ray_batch
from musicgen_cli.jobs.batch import BatchOptions, run_batch
from musicgen_cli.jobs.batchfile import Defaults, read_items
from musicgen_cli.jobs.ray_batch import Cluster, run_ray_batch, worker_shape

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("tiny-random", "tiny-random-stereo")
# What differs between two runs of the same item anywhere: time, memory and the machine's free RAM and disk.
VOLATILE = {"timings_s", "peak_ram_bytes", "peak_vram_bytes", "steps_per_s", "realtime_factor", "ray_worker", "speed_estimate"}  # speed_estimate: from steps_per_s
VOLATILE_PLAN = {"machine", "max_memory", "estimates"}


@pytest.fixture(scope="module")
def cluster():
    """A Ray instance of 2 CPUs on 127.0.0.1 in a temporary folder, its workers seeing one model cache."""
    temp = Path(tempfile.mkdtemp(prefix="mgen-ray-"))  # short: Ray's socket paths must fit 107 bytes
    cache = temp / "model-cache"
    cache.mkdir()
    env = {"MGEN_CACHE_DIR": str(cache), "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the workers Ray starts inherit this process's environment
    for name in MODELS:  # built once here, not by two workers at once
        resolve_model(name)
    context = ray.init(
        num_cpus=2, include_dashboard=False, _temp_dir=str(temp / "ray"), _node_ip_address="127.0.0.1",
        object_store_memory=100 * 2**20, log_to_driver=False, configure_logging=False,
    )
    try:
        yield {"address": context.address_info["gcs_address"], "cache": cache, "env": {**os.environ}}
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


def items_file(folder: Path, n: int, models: tuple[str, ...] = ("tiny-random",)) -> Path:
    src = folder / "items.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"clip number {i}", "model": models[i % len(models)]}) + "\n" for i in range(n)))
    return src


def manifest(out: Path) -> list[dict]:
    return batchlog.read_jsonl(out / batchlog.MANIFEST)


def sidecars(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def comparable(meta: dict) -> dict:
    plan = {k: v for k, v in meta["plan"].items() if k not in VOLATILE_PLAN}
    return {**{k: v for k, v in meta.items() if k not in VOLATILE}, "plan": plan}


@pytest.fixture(scope="module")
def mixed(cluster, tmp_path_factory, one_torch_thread):
    """One file of two model keys, through 2 Ray workers and through a local batch."""
    folder = tmp_path_factory.mktemp("mixed")
    src = items_file(folder, 8, MODELS)
    with src.open("a") as lines:  # passes parsing, fails on the model: recorded, and the rest go on
        lines.write(json.dumps({"prompt": "too long a window", "window_s": 500.0}) + "\n")
    defaults = Defaults("tiny-random", GenerateSettings(duration=0.3), base_seed=40)
    options = BatchOptions(max_batch=2, cpu=True)
    ray_out, local_out = folder / "ray", folder / "local"
    summary = run_ray_batch(read_items(src, defaults, ray_out), ray_out, options, Cluster(workers=2))
    from musicgen_cli.planning.hardware import probe, simulate

    run_batch(read_items(src, defaults, local_out), local_out, BatchOptions(max_batch=2, cpu=True, machine=simulate(probe(), no_gpu=True)))
    return summary, ray_out, local_out


def test_ray_batch_writes_the_files_of_a_local_batch(mixed):
    summary, ray_out, local_out = mixed
    assert (summary.items, summary.done, summary.failed, summary.generated) == (9, 8, 1, 9)
    assert len(summary.failures) == 1 and "window" in summary.failures[0][1]
    wavs = sorted(p.name for p in local_out.glob("*.wav"))
    assert len(wavs) == 8 and sorted(p.name for p in ray_out.glob("*.wav")) == wavs
    for name in wavs:  # the same samples, levels and format, byte for byte
        assert (ray_out / name).read_bytes() == (local_out / name).read_bytes(), name
    ray_meta, local_meta = sidecars(ray_out), sidecars(local_out)
    assert sorted(ray_meta) == sorted(local_meta)
    for name in ray_meta:  # the same seeds, passes, settings, model, plan and levels
        assert comparable(ray_meta[name]) == comparable(local_meta[name]), name
    keep = ("id", "status", "files", "seed", "item_seed", "batch", "attempt", "error")
    assert [{k: r[k] for k in keep} for r in manifest(ray_out)] == [{k: r[k] for k in keep} for r in manifest(local_out)]
    assert not list(ray_out.glob("manifest.rank-*")) and not (ray_out / ".mgen-batch").exists()


def test_two_model_keys_load_once_per_worker(mixed):
    _, ray_out, _ = mixed
    loads = {}
    for meta in sidecars(ray_out).values():
        worker = meta["ray_worker"]
        loads.setdefault((worker["pid"], meta["model"]["key"]), set()).add(worker["model_loads"])
    assert {key for _, key in loads} == set(MODELS)
    assert all(counts == {1} for counts in loads.values()), loads
    # Passes of 2 items of one model (4 items a model): each pass on its first item's seed.
    assert sorted((m["batch"]["size"], m["seed"]) for m in sidecars(ray_out).values())[::2] == [(2, 40), (2, 41), (2, 44), (2, 45)]


def test_worker_killed_mid_item_every_item_written_once(cluster, tmp_path, monkeypatch):
    out = tmp_path / "out"
    # Long enough clips that a worker is still generating when its status says so.
    items = read_items(items_file(tmp_path, 5), Defaults("tiny-random", GenerateSettings(duration=15.0), base_seed=1), out)
    writes: dict[str, int] = {}
    real_write = ray_batch.write

    def counting(rendered, request, *args):
        for path in request.paths:
            writes[path.name] = writes.get(path.name, 0) + 1
        return real_write(rendered, request, *args)

    monkeypatch.setattr(ray_batch, "write", counting)
    # Which pass the kill interrupted is what the driver itself puts back in the queue: the status
    # file lags up to a second behind the worker, so it cannot name that pass.
    lost: list[tuple] = []
    real_lost = ray_batch._Driver._lost

    def spying(self, slot, job):
        lost.append(job)
        return real_lost(self, slot, job)

    monkeypatch.setattr(ray_batch._Driver, "_lost", spying)
    killed: dict = {}

    def kill_one_generating_worker():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            for path in (out / ".mgen-batch").glob("status.rank-*.json"):
                try:
                    status = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if status["phase"] == "generate" and status["pid"] and status["running"]:
                    os.kill(status["pid"], signal.SIGKILL)
                    killed.update(status)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_generating_worker)
    killer.start()
    summary = run_ray_batch(items, out, BatchOptions(max_batch=1, cpu=True), Cluster(workers=2))
    killer.join()
    assert killed, "no worker was seen generating"
    assert (summary.done, summary.failed, summary.generated) == (5, 0, 5)
    records = manifest(out)
    assert sorted(r["id"] for r in records) == sorted(it.id for it in items)
    assert all(r["status"] == "ok" and r["attempt"] == 1 for r in records)
    assert writes == {f"{it.id}.wav": 1 for it in items}
    # The pass the killed process was generating was made again by a live one.
    interrupted = [item.id for job in lost if job[0] == "render" for item in job[2]]
    assert interrupted, f"the kill interrupted no pass: {lost}"
    for item_id in interrupted:
        again = json.loads((out / f"{item_id}.json").read_text())["ray_worker"]
        assert again["pid"] != killed["pid"] and again["model_loads"] == 1
    for it in items:
        data, rate = sf.read(out / f"{it.id}.wav")
        assert rate == 32000 and abs(len(data) - 15.0 * rate) <= 640


def test_driver_killed_then_rerun_resumes_without_duplicates(cluster, tmp_path):
    out = tmp_path / "out"
    src = tmp_path / "prompts.txt"
    items = 40  # enough that a loaded machine cannot finish them all between two polls before the kill
    src.write_text("".join(f"clip number {i}\n" for i in range(items)))
    args = [sys.executable, "-m", "musicgen_cli", "batch", str(src), "--out-dir", str(out), "--model-key", "tiny-random",
            "--duration", "0.3", "--max-batch", "1", "--device", "cpu", "--ray", cluster["address"], "--ray-workers", "2"]
    proc = subprocess.Popen([*args, "--quiet"], env=cluster["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = batchlog.rank_file(out, 0)
    deadline = time.time() + 300
    while time.time() < deadline and len(batchlog.read_jsonl(log)) < 2:
        assert proc.poll() is None, f"the batch ended before it could be killed: {proc.stderr.read()[-2000:]}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {r["id"]: r for r in batchlog.read_jsonl(log)}
    assert 2 <= len(first) < items

    again = subprocess.run([*args, "--json"], check=False, env=cluster["env"], capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    records = manifest(out)
    assert len(records) == items and len({r["id"] for r in records}) == items
    assert all(r["status"] == "ok" and r["attempt"] == 1 for r in records)
    for record in records:
        if record["id"] in first:  # finished before the kill: kept as it was
            assert record == first[record["id"]]
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert summary["generated"] + summary["skipped"] == items and summary["generated"] <= items - len(first)
    assert len(list(out.glob("*.wav"))) == items


def test_workers_one_per_gpu_else_one_per_node():
    assert worker_shape({"CPU": 16, "GPU": 4}, [8, 8], None, cpu=False) == (4, {"num_gpus": 1, "num_cpus": 4})
    assert worker_shape({"CPU": 16, "GPU": 4}, [8, 8], 2, cpu=False) == (2, {"num_gpus": 1, "num_cpus": 4})
    assert worker_shape({"CPU": 12, "GPU": 4}, [8, 4], None, cpu=True) == (2, {"num_cpus": 4})
    assert worker_shape({"CPU": 2}, [2], 2, cpu=False) == (2, {"num_cpus": 1})


def test_panel_shows_workers_and_running_items(tmp_path):
    from rich.console import Console

    from musicgen_cli.ui.batchpanel import BatchDisplay

    batchlog.write_run(tmp_path, "r1", pending=6, skipped=0, processes=2)
    log = batchlog.RankLog(tmp_path, 0)
    for n, status in enumerate(["ok", "ok", "failed"]):
        log.append({"id": f"item-{n}", "status": status, "files": ["a.wav"] if status == "ok" else [], "run": "r1"})
    log.close()
    batchlog.write_status(tmp_path, batchlog.RankStatus(
        rank=0, phase="generate", detail="0004-x +1  40/60 frames", done=2, assigned=4, kind="worker", running=2, pid=4242, host="node-a",
    ))
    batchlog.write_status(tmp_path, batchlog.RankStatus(rank=1, phase="load", detail="tiny-random", failed=1, assigned=1, kind="worker"))
    console = Console(record=True, width=160)
    console.print(BatchDisplay(console, tmp_path).render())
    text = console.export_text()
    assert "3/6 items  done 2  running 2  failed 1" in text
    assert "worker 0 (pid 4242 on node-a): generate 0004-x +1  40/60 frames  (2 done, 0 failed of 4)" in text
    assert "worker 1: load tiny-random" in text


def test_ray_with_processes_is_refused_before_anything(tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("a\n")
    result = run_main(capsys, "batch", str(src), "--out-dir", str(tmp_path / "out"), "--ray", "local", "--processes", "2")
    assert "--ray and --processes both spread the batch" in one_line_error(result)
    assert not (tmp_path / "out").exists()


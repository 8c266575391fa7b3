#!/usr/bin/env python3
"""Two builds' model loads in turns, shuffled: `ra caption` on a small image with each model, the
seconds from the process start to the "weights:" line (the load), the whole run, and the memory.
usage: in-turns.py BEFORE_DLL AFTER_DLL MODEL[,MODEL...] REPS OUT.json ["MORE ARGS", e.g. "--weights q8"]
(a DLL: src/RealtimeAssistant.Cli/bin/Release/net10.0/linux-x64/ra.dll of a checkout; a model: a
folder, e.g. .ra/bench-models/Qwen2-VL-2B-Instruct, made by `ra bench weights --family qwen2_vl`)"""
import json, os, random, re, statistics, struct, subprocess, sys, tempfile, time, zlib

before, after, models, reps, out = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]), sys.argv[5]
more = sys.argv[6].split() if len(sys.argv) > 6 else []
builds = {"before": before, "after": after}
image = os.path.join(tempfile.mkdtemp(), "grey.png")
raw = b"".join(b"\x00" + b"\x80\x80\x80" * 64 for _ in range(64))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
open(image, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

order = [(m, b) for m in models for b in builds for _ in range(reps)]
random.shuffle(order)
runs = []
for model, build in order:
    t0 = time.time()
    p = subprocess.Popen(["dotnet", builds[build], "caption", "--image", image, "-m", model, "--max-new-tokens", "2"] + more,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    load = resident = None
    for line in p.stdout:
        if line.startswith("weights:") and load is None:
            load = time.time() - t0
            resident = int(re.search(r"resident ([\d,]+) MB", line).group(1).replace(",", ""))
    _, status, usage = os.wait4(p.pid, 0)
    run = dict(model=os.path.basename(model.rstrip("/")), build=build, load_s=round(load, 3), total_s=round(time.time() - t0, 3),
               resident_mb=resident, peak_mb=round(usage.ru_maxrss / 1024), exit=os.waitstatus_to_exitcode(status))
    runs.append(run)
    print(json.dumps(run), flush=True)

summary = []
for model in dict.fromkeys(r["model"] for r in runs):
    side = {b: [r for r in runs if r["model"] == model and r["build"] == b] for b in builds}
    med = lambda b, k: statistics.median(r[k] for r in side[b])
    row = dict(model=model, reps=reps, **{f"{k}_{b}": med(b, k) for k in ("load_s", "total_s", "resident_mb", "peak_mb") for b in builds})
    row["load_ratio"] = round(row["load_s_after"] / row["load_s_before"], 3)
    summary.append(row)
    print(f"{model}: load {row['load_s_before']:.2f} -> {row['load_s_after']:.2f} s (x{row['load_ratio']}), whole run {row['total_s_before']:.2f} -> {row['total_s_after']:.2f} s, "
          f"resident {row['resident_mb_before']:.0f} -> {row['resident_mb_after']:.0f} MB, peak {row['peak_mb_before']:.0f} -> {row['peak_mb_after']:.0f} MB")
json.dump(dict(args=more, runs=runs, medians=summary), open(out, "w"), indent=1)

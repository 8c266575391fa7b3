#!/usr/bin/env python3
"""A stream's start with the warm-up on and off, in turns, shuffled: `ra stream media/demo.mp4`
with each model, the seconds from the header line to the first caption (what the warm-up costs the
wait), and the first and second reads' and writes' ms from the JSONL (what it buys them).
usage: in-turns.py DLL MODEL[,MODEL...] REPS OUT.json
(DLL: src/RealtimeAssistant.Cli/bin/Release/net10.0/linux-x64/ra.dll; a model: a folder, e.g.
media/demo-model or .ra/bench-models/Qwen2-VL-2B-Instruct from `ra bench weights --family qwen2_vl`)"""
import json, os, random, statistics, subprocess, sys, tempfile, time

dll, models, reps, out = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
# Two reads at the default stride (frames 0 and 5), each captioned; the governor off so every read is the unpruned one.
args = ["--gate", "0", "--policy", "every:1", "--frame-budget-ms", "off", "--max-frames", "6", "--max-new-tokens", "12"]
order = [(m, w) for m in models for w in ("on", "off") for _ in range(reps)]
random.shuffle(order)
runs = []
for model, warm in order:
    jsonl = tempfile.mktemp(suffix=".jsonl")
    t0 = time.time()
    p = subprocess.Popen(["dotnet", dll, "stream", "media/demo.mp4", "-m", model, "--warm-up", warm, "--jsonl", jsonl] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    header = first = None
    for line in p.stdout:
        now = time.time() - t0
        if header is None and line.startswith(("file ", "camera ", "pipe ")):
            header = now
        if first is None and line.startswith("[00:"):
            first = now
    p.wait()
    caps = [json.loads(l) for l in open(jsonl)]
    os.remove(jsonl)
    run = dict(model=os.path.basename(model.rstrip("/")), warm_up=warm, exit=p.returncode, start_s=round(header, 3),
               header_to_first_caption_s=round(first - header, 3),
               read_ms=[c["read_ms"] for c in caps], write_ms=[c["write_ms"] for c in caps])
    runs.append(run)
    print(json.dumps(run), flush=True)

summary = []
for model in dict.fromkeys(r["model"] for r in runs):
    row = dict(model=model, reps=reps)
    for w in ("on", "off"):
        side = [r for r in runs if r["model"] == model and r["warm_up"] == w]
        row[f"header_to_first_caption_s_{w}"] = statistics.median(r["header_to_first_caption_s"] for r in side)
        for k in ("read_ms", "write_ms"):
            row[f"first_{k}_{w}"] = statistics.median(r[k][0] for r in side)
            row[f"second_{k}_{w}"] = statistics.median(r[k][1] for r in side if len(r[k]) > 1)
    row["warm_up_costs_the_first_caption_s"] = round(row["header_to_first_caption_s_on"] - row["header_to_first_caption_s_off"], 3)
    summary.append(row)
    print(json.dumps(row), flush=True)
json.dump(dict(command=" ".join(sys.argv), args=args, summary=summary, runs=runs), open(out, "w"), indent=1)

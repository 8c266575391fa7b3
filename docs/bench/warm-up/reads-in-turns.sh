#!/bin/bash
# Each build's `ra stream` over media/demo.mp4 (480x480) in turns, shuffled: every read's and write's time from the JSONL.
out=$1; rounds=${2:-6}; frames=${3:-450}
: > $out
for r in $(seq $rounds); do
  for b in $(printf "before\nafter\n" | shuf); do
    dir=/var/tmp/before; [ $b = after ] && dir=/work/main
    f=/var/tmp/warmbench/$b-reads.jsonl; rm -f $f
    dotnet $dir/src/RealtimeAssistant.Cli/bin/Release/net10.0/linux-x64/ra.dll stream $dir/media/demo.mp4 --gate 0 --stride 1 --policy every:1 --frame-budget-ms off --max-frames $frames --jsonl $f >/dev/null 2>&1
    python3 - $b $f >> $out <<'P'
import json,sys
b,f=sys.argv[1:]
rows=[json.loads(l) for l in open(f)]
print(json.dumps({'build':b,'read_ms':[r['read_ms'] for r in rows],'write_ms':[r['write_ms'] for r in rows],'ms':[r['ms'] for r in rows]}))
P
  done
done

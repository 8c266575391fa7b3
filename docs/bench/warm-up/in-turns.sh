#!/bin/bash
# Each build's `ra stream` in turns, shuffled: the first captions' times (the JSONL) and the wall time.
out=$1; rounds=${2:-8}
: > $out
for r in $(seq $rounds); do
  for b in $(printf "before\nafter\n" | shuf); do
    dir=/var/tmp/before; [ $b = after ] && dir=/work/main
    f=/var/tmp/warmbench/$b.jsonl; rm -f $f
    s=$(date +%s.%N)
    dotnet $dir/src/RealtimeAssistant.Cli/bin/Release/net10.0/linux-x64/ra.dll stream $dir/media/demo.mp4 --gate 0 --stride 1 --policy every:1 --max-frames 20 --jsonl $f >/dev/null 2>&1
    e=$(date +%s.%N)
    python3 - $b $s $e $f >> $out <<'P'
import json,sys
b,s,e,f=sys.argv[1:]
rows=[json.loads(l) for l in open(f)]
print(json.dumps({'build':b,'wall_s':round(float(e)-float(s),3),'ms':[r['ms'] for r in rows],'read_ms':[r['read_ms'] for r in rows],'write_ms':[r['write_ms'] for r in rows]}))
P
  done
done

import json,glob,statistics,sys
base=sys.argv[1] if len(sys.argv)>1 else '/work/bench/cost/chat'
rows={}
for f in sorted(glob.glob(base+'/chat-*-r*.json')):
    d=json.load(open(f))
    name=f.split('chat-')[-1].rsplit('-r',1)[0]
    rows.setdefault(name,[]).append(d)
rates=[100,500,1000,2000]
print("| build | runs | " + " | ".join(f"p99 {r}/s" for r in rates) + " | CPU µs/save " + "/".join(map(str,rates)) + " |")
print("|---|---:|" + "---:|"*len(rates) + "---|")
med={}
for name in ['main','before','hook','auto']:
    if name not in rows: continue
    runs=rows[name]
    p99=[]; cpu=[]
    for r in rates:
        vals=[s['ack']['p99Ms'] for d in runs for s in d['steps'] if s['rate']==r]
        cv=[s['serverUserCpuUsPerSave'] for d in runs for s in d['steps'] if s['rate']==r]
        p99.append(statistics.median(vals)); cpu.append(statistics.median(cv))
    med[name]=(p99,cpu)
    print(f"| {name} | {len(runs)} | " + " | ".join(f"{v:.1f}" for v in p99) + " | " + " / ".join(f"{v:.0f}" for v in cpu) + " |")
for name in ['before','hook','auto']:
    if name in med:
        print(name, "vs main p99:", " ".join(f"{(med['main'][0][i]/med[name][0][i]-1)*100 if name=='before' else (med[name][0][i]/med['main'][0][i]-1)*100:+.0f}%" for i in range(4)))
for name in rows:
    print(name, [ [s['ack']['p99Ms'] for s in d['steps'] if s['rate']==1000][0] for d in rows[name]])

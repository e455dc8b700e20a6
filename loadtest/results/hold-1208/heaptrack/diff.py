import sys, re, collections
a,b,n=sys.argv[1],sys.argv[2],int(sys.argv[3]); depth=int(sys.argv[4]); top=int(sys.argv[5])
skip=re.compile(r'^(alloc::|core::|__rdl|_RNv.*rdl|__rust|hashbrown::|std::collections|_\$LT\$alloc|_\$LT\$core|<alloc|<core|bytes::|malloc|0x|std::sys|_\$LT\$hashbrown|_\$LT\$std..collections|_\$LT\$T\$u20\$as\$u20\$alloc|smallvec::|_\$LT\$smallvec|std::sync::|_\$LT\$std|_RNv|_RIN)')
def clean(f):
    f=re.sub(r'::h[0-9a-f]{16}$','',f)
    return f.replace('$LT$','<').replace('$GT$','>').replace('$u7b$','{').replace('$u7d$','}').replace('$u20$',' ').replace('..','::').replace('$C$',',').replace('$RF$','&')
def load(p):
    agg=collections.Counter()
    for line in open(p):
        stack,_,cost=line.rstrip('\n').rpartition(' ')
        frames=[clean(f) for f in stack.split(';')]
        keep=[f for f in frames if not skip.match(f)]
        agg[' < '.join(reversed(keep[-depth:]))]+=int(cost)
    return agg
A,B=load(a),load(b)
d=collections.Counter({k:B[k]-A.get(k,0) for k in set(A)|set(B)})
print(f"total diff per conn {sum(d.values())/n:.0f}")
for k,c in d.most_common(top):
    print(f"{c/n:8.1f}  {k[:330]}")

"""Attention kernels on OneVision-0.5B shapes (14 query heads, 2 KV heads, head_dim 64), one layer, 2 threads:
the opset-20 exporter pattern (KV heads repeated), opset-23 Attention, and com.microsoft.GroupQueryAttention
with and without attention_bias. Prefill of S tokens (default 1584) and one decode step at past S.

    python python/bench_attention.py [S]
"""
import numpy as np, onnx, onnxruntime as ort, time, sys
from onnx import helper as h, TensorProto as TP
H,Hkv,D=14,2,64
S=int(sys.argv[1]) if len(sys.argv)>1 else 1584
G=H//Hkv
def sess(m):
    m.ir_version=10
    so=ort.SessionOptions(); so.intra_op_num_threads=2; so.log_severity_level=3
    return ort.InferenceSession(m.SerializeToString(),so,providers=["CPUExecutionProvider"])
def vi(n,shape,t=TP.FLOAT): return h.make_tensor_value_info(n,t,shape)
# 1) GQA contrib, packed qkv, rotary + pos + bias
cos=np.random.rand(32768,D//2).astype(np.float32); sin=np.random.rand(32768,D//2).astype(np.float32)
def gqa(with_bias):
    ins=["qkv","","","pk","pv","seqlens","total","cos","sin","pos","bias" if with_bias else ""]
    while ins[-1]=="": ins.pop()
    n=h.make_node("GroupQueryAttention",ins,["out","presk","presv"],domain="com.microsoft",num_heads=H,kv_num_heads=Hkv,do_rotary=1)
    g=h.make_graph([n],"g",[vi("qkv",["B","S",(H+2*Hkv)*D]),vi("pk",["B",Hkv,"P",D]),vi("pv",["B",Hkv,"P",D]),vi("seqlens",["B"],TP.INT32),vi("total",[],TP.INT32),vi("pos",["B","S"],TP.INT64)]+([vi("bias",["B",1,"S","T"])] if with_bias else []),
                   [vi("out",None),vi("presk",None),vi("presv",None)],[h.make_tensor("cos",TP.FLOAT,cos.shape,cos.ravel()),h.make_tensor("sin",TP.FLOAT,sin.shape,sin.ravel())])
    return sess(h.make_model(g,opset_imports=[h.make_opsetid("",20),h.make_opsetid("com.microsoft",1)]))
# 2) opset-23 Attention: Q [B,H,S,D], K,V [B,Hkv,S,D] with past (4D)
def att23():
    n=h.make_node("Attention",["q","k","v","mask","pk","pv"],["out","presk","presv"],is_causal=1,q_num_heads=H,kv_num_heads=Hkv)
    g=h.make_graph([n],"g",[vi("q",["B",H,"S",D]),vi("k",["B",Hkv,"S",D]),vi("v",["B",Hkv,"S",D]),vi("mask",["B",1,"S","T"]),vi("pk",["B",Hkv,"P",D]),vi("pv",["B",Hkv,"P",D])],[vi("out",None),vi("presk",None),vi("presv",None)])
    return sess(h.make_model(g,opset_imports=[h.make_opsetid("",23)]))
# 3) unfused: concat past, expand kv heads, matmul, add mask, softmax, matmul
def unfused():
    nodes=[h.make_node("Concat",["pk","k"],["K"],axis=2),h.make_node("Concat",["pv","v"],["V"],axis=2),
      h.make_node("Unsqueeze",["K","ax2"],["K1"]),h.make_node("Expand",["K1","eshape"],["K2"]),h.make_node("Reshape",["K2","rshape"],["K3"]),
      h.make_node("Unsqueeze",["V","ax2"],["V1"]),h.make_node("Expand",["V1","eshape"],["V2"]),h.make_node("Reshape",["V2","rshape"],["V3"]),
      h.make_node("Transpose",["K3"],["KT"],perm=[0,1,3,2]),h.make_node("MatMul",["q","KT"],["sc"]),h.make_node("Mul",["sc","scale"],["sc2"]),
      h.make_node("Add",["sc2","mask"],["sc3"]),h.make_node("Softmax",["sc3"],["p"],axis=-1),h.make_node("MatMul",["p","V3"],["out"])]
    T=S
    inits=[h.make_tensor("ax2",TP.INT64,[1],[2]),h.make_tensor("eshape",TP.INT64,[5],[1,Hkv,G,1,1]),h.make_tensor("rshape",TP.INT64,[4],[0,H,-1,D]),h.make_tensor("scale",TP.FLOAT,[],[D**-0.5])]
    g=h.make_graph(nodes,"g",[vi("q",["B",H,"S",D]),vi("k",["B",Hkv,"S",D]),vi("v",["B",Hkv,"S",D]),vi("mask",["B",1,"S","T"]),vi("pk",["B",Hkv,"P",D]),vi("pv",["B",Hkv,"P",D])],[vi("out",None),vi("K",None),vi("V",None)],inits)
    return sess(h.make_model(g,opset_imports=[h.make_opsetid("",20)]))
def timeit(s,feeds,n=3):
    s.run(None,feeds); best=1e9
    for _ in range(n):
        t=time.perf_counter(); s.run(None,feeds); best=min(best,time.perf_counter()-t)
    return best
B=1
rng=np.random.default_rng(0)
causal=np.triu(np.full((S,S),np.finfo(np.float32).min,np.float32),1)[None,None]
for P,Sq in [(0,S),(S,1)]:
    T=P+Sq
    mask=np.zeros((B,1,Sq,T),np.float32)
    if Sq>1: mask=causal.copy()
    res={}
    s=gqa(True); res["GQA+bias"]=timeit(s,{"qkv":rng.random((B,Sq,(H+2*Hkv)*D),np.float32),"pk":rng.random((B,Hkv,P,D),np.float32),"pv":rng.random((B,Hkv,P,D),np.float32),"seqlens":np.array([T-1],np.int32),"total":np.array(T,np.int32),"pos":np.arange(P,T)[None].astype(np.int64),"bias":np.zeros((B,1,Sq,T),np.float32)})
    s=gqa(False); res["GQA"]=timeit(s,{"qkv":rng.random((B,Sq,(H+2*Hkv)*D),np.float32),"pk":rng.random((B,Hkv,P,D),np.float32),"pv":rng.random((B,Hkv,P,D),np.float32),"seqlens":np.array([T-1],np.int32),"total":np.array(T,np.int32),"pos":np.arange(P,T)[None].astype(np.int64)})
    q=rng.random((B,H,Sq,D),np.float32); k=rng.random((B,Hkv,Sq,D),np.float32); v=rng.random((B,Hkv,Sq,D),np.float32)
    try:
        s=att23(); res["Attention-23"]=timeit(s,{"q":q,"k":k,"v":v,"mask":np.zeros((B,1,Sq,T),np.float32),"pk":rng.random((B,Hkv,P,D),np.float32),"pv":rng.random((B,Hkv,P,D),np.float32)})
    except Exception as e: print("att23 err",str(e)[:200])
    s=unfused(); res["unfused"]=timeit(s,{"q":q,"k":k,"v":v,"mask":mask,"pk":rng.random((B,Hkv,P,D),np.float32),"pv":rng.random((B,Hkv,P,D),np.float32)})
    print(f"past {P} seq {Sq}: "+", ".join(f"{k} {v*1e3:.2f} ms" for k,v in res.items()), flush=True)

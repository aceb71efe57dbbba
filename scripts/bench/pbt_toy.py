# The PBT toy (scripts/bench-pbt.sh, and the checkpoints test): a
# trial whose best learning rate falls as it trains. Each step shrinks v
# by (1 - lr); the loss, v + 0.2 lr, has a floor that grows with lr. Its
# state (owner, step, v) is its checkpoint, written whole (write, then
# rename) after every step; it prints what it restored from. A step takes
# 0.12 s, longer than flambe's 0.1 s metrics poll: PBT ranks trials by
# their latest values, which compares like with like only while the
# trials' reports come in step by step, as real training's do.
import json, os, sys, time
lr = float(sys.argv[1])
me, ck = os.environ["FLAMBE_TRIAL"], os.environ["FLAMBE_CHECKPOINT"]
src = os.environ.get("FLAMBE_RESTORE_FROM", ck)
state = {"owner": me, "step": 0, "v": 1.0}
try:
    with open(os.path.join(src, "state.json")) as f:
        state = json.load(f)
except FileNotFoundError:
    pass
print("restored owner=%s step=%d lr=%s attempt=%s" % (state["owner"], state["step"], lr, os.environ["FLAMBE_ATTEMPT"]), flush=True)
with open(os.environ["FLAMBE_METRICS"], "a") as metrics:
    while state["step"] < 30:
        state["step"] += 1
        state["v"] *= 1 - lr
        state["owner"] = me
        tmp = os.path.join(ck, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(ck, "state.json"))
        metrics.write(json.dumps({"step": state["step"], "loss": state["v"] + 0.2 * lr}) + "\n")
        metrics.flush()
        time.sleep(0.12)

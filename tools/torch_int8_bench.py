"""Times PyTorch's own INT8 inference (eager-mode post-training static quantization, oneDNN engine)
against its FP32 inference on the reference models, so qslim's INT8 benchmark can report a ratio
measured on the same machine in the same run.

set-up: apt-get install -y python3-torch libopenblas0-openmp
usage: /usr/bin/python3 torch_int8_bench.py [--threads 2] [--models lenet,resnet20,mobilenet_v2_small]
                                            [--peer-dir DIR] [--json]
The model definitions come from the peer directory's torch_models.py (default: $QSLIM_PEER_DIR, else
../shared/peer next to the source tree); they already carry QuantStub/DeQuantStub, FloatFunctional
residual adds and eager-mode fuse() groups (conv+bn(+relu); ReLU6 stays a separate quantized op).
INT8: fuse, qconfig = get_default_qconfig(engine) (per-channel symmetric int8 weights, histogram
observer on uint8 activations), prepare, calibrate on random batches, convert. Prints, per model,
FP32 and INT8 inference img/s at batch 256 and batch-1 latency (medians of the timed repetitions).
Inputs are random tensors of Fashion-MNIST shape (1x28x28); no data set is needed.
"""
import argparse, json, os, statistics, sys, time, warnings

# Same BLAS set-up as bench_torch.py (OpenBLAS misdetects this CPU family), before torch loads.
os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")

MODEL_NAMES = ["lenet", "resnet20", "mobilenet_v2_small"]


def find_peer_dir(arg):
    here = os.path.dirname(os.path.abspath(__file__))
    for d in [arg, os.environ.get("QSLIM_PEER_DIR"), os.path.join(here, "..", "..", "shared", "peer")]:
        if d and os.path.exists(os.path.join(d, "torch_models.py")):
            return os.path.abspath(d)
    sys.exit("torch_int8_bench.py: torch_models.py not found (pass --peer-dir or set QSLIM_PEER_DIR)")


def median_seconds(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pick_engine():
    engines = torch.backends.quantized.supported_engines
    for e in ["onednn", "fbgemm", "qnnpack"]:
        if e in engines:
            if e != "onednn":
                print(f"torch_int8_bench.py: onednn engine unavailable (supported: {engines}), using {e}",
                      file=sys.stderr)
            return e
    sys.exit(f"torch_int8_bench.py: no quantized engine available (supported: {engines})")


def quantize(model, engine, calib_batches):
    """Eager-mode post-training static quantization of an eval-mode float model (in place)."""
    from torch.ao.quantization import get_default_qconfig, prepare, convert
    model.eval()
    model.fuse()
    model.qconfig = get_default_qconfig(engine)
    prepare(model, inplace=True)
    # InvRes blocks without a residual never call their FloatFunctional, whose observer then warns.
    warnings.filterwarnings("ignore", message="must run observer before calling calculate_qparams")
    with torch.no_grad():
        for _ in range(calib_batches):
            model(torch.randn(32, 1, 28, 28))
    convert(model, inplace=True)
    quantized = [m for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")
                 or type(m).__module__.startswith("torch.nn.quantized")
                 or type(m).__module__.startswith("torch.nn.intrinsic.quantized")
                 or type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized")]
    convs = [m for m in quantized if "Conv" in type(m).__name__ or "Linear" in type(m).__name__]
    if not convs:
        raise RuntimeError("conversion produced no quantized conv/linear modules")
    return model, len(convs)


def time_inference(model):
    xb, x1 = torch.randn(256, 1, 28, 28), torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        t_b256 = median_seconds(lambda: model(xb), 10, 3)
        t_b1 = median_seconds(lambda: model(x1), 200, 20)
    return 256 / t_b256, 1000 * t_b1


def bench(name, engine, calib_batches):
    torch.manual_seed(0)
    fp32 = MODELS[name]().eval()
    # Non-trivial BN statistics so the folded weights are not the identity.
    with torch.no_grad():
        for m in fp32.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    fp32_img_s, fp32_ms = time_inference(fp32)
    int8 = MODELS[name]()
    int8.load_state_dict(fp32.state_dict())
    int8, n_quantized = quantize(int8, engine, calib_batches)
    int8_img_s, int8_ms = time_inference(int8)
    return {"model": name, "fp32_img_s_bs256": fp32_img_s, "int8_img_s_bs256": int8_img_s,
            "fp32_latency_ms_bs1": fp32_ms, "int8_latency_ms_bs1": int8_ms, "quantized_layers": n_quantized}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--peer-dir", default=None)
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, find_peer_dir(args.peer_dir))
    global torch, MODELS
    import torch
    from torch_models import LeNet5, ResNetC, MobileNetV2S
    MODELS = {"lenet": LeNet5, "resnet20": lambda: ResNetC(3), "mobilenet_v2_small": MobileNetV2S}
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        sys.exit(f"torch_int8_bench.py: unknown model(s) {unknown}; known: {MODEL_NAMES}")
    torch.set_num_threads(args.threads)
    engine = pick_engine()
    torch.backends.quantized.engine = engine
    rows = [bench(name, engine, args.calib_batches) for name in names]
    if args.json:
        print(json.dumps({"torch": torch.__version__, "engine": engine, "threads": args.threads, "results": rows}))
    else:
        print(f"PyTorch {torch.__version__}, quantized engine {engine}, {args.threads} threads")
        for r in rows:
            print(f"{r['model']:>20}  FP32 bs256 {r['fp32_img_s_bs256']:9.0f} img/s  bs1 {r['fp32_latency_ms_bs1']:.3f} ms"
                  f"   INT8 bs256 {r['int8_img_s_bs256']:9.0f} img/s  bs1 {r['int8_latency_ms_bs1']:.3f} ms"
                  f"   (INT8/FP32 {r['int8_img_s_bs256'] / r['fp32_img_s_bs256']:.2f}x)")


if __name__ == "__main__":
    main()

"""make bench: throughput of the rejection samplers and the SGD population, each printed as a
ratio against baselines measured in this same run on this machine (no stored numbers):
  * dense matmul peak: jax sgemm (2048^3, float32), the denominator of every FLOP fraction;
  * the plain sampler: vmap of stax init_fn (one key per network) + apply on all inputs;
  * the plain SGD loop: one network at a time, a jit-compiled optax step in a Python loop,
    stopping at 100% training accuracy (checked on the host after every step);
  * stage scaling: every population stage as `python -m study <stage>` runs it, on one core against all
    cores in one process and one shard per core (bench/stages.py).
Usage: python -m bench [--quick] [--only SECTION ...]   (--quick: smaller samples, for a fast look)
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import warnings

from study import devices, geometry, mcmc, nngp, rejection, sgd
from study.devices import use_every_core
from bench.stages import bench_stage_scaling
from study.diagnostics import TOP_FUNCTIONS_TRACED
from study.config import NetworkConfig, SGDConfig, SGDSetting
from study.network import build_network
from study.tasks import make_task

TARGET = {"sampler_peak_fraction": 0.5, "sgd_peak_fraction": 0.25, "sgd_speedup_vs_loop": 50.0}


def timed(fn, *args, repeat=3):
    """Best wall time of fn(*args) over `repeat` calls after one warm-up call."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def sgemm_peak(n=2048) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    return 2 * n**3 / timed(jax.jit(jnp.dot), a, b, repeat=5)


def bench_sampler(peak, net, task, label, batch, n_batches, prng):
    x = jnp.asarray(np.concatenate([task.x_train, task.x_test]))
    flops = rejection.useful_flops_per_draw(net, task)
    # Plain baseline: stax's own init_fn per network key, vmapped, then the forward pass.
    def plain(key):
        keys = jax.random.split(key, batch)
        params = jax.vmap(lambda k: net.init_fn(k, (-1, *net.input_shape))[1])(keys)
        out = jax.vmap(net.apply_fn, (0, None))(params, x)[..., 0]
        return out > 0
    t_plain = timed(jax.jit(plain), jax.random.key(0)) / batch
    batch_fn = rejection.make_batch_fn(net, task, batch)
    key = jax.random.key(0, impl=prng)
    rejection.sample_chunk(batch_fn, key, 2, len(task.test_idx))
    res = rejection.sample_chunk(batch_fn, jax.random.fold_in(key, 1), n_batches, len(task.test_idx))
    t_ours = res["seconds"] / res["draws"]
    # The cost of the prior's random numbers alone bounds what any exact iid sampler can reach.
    rng = jax.jit(lambda k: net.sample_prior(k, batch))
    t_rng = timed(rng, key) / batch
    print(f"\n[rejection sampler] {label}: {net.n_params} parameters, {len(x)} inputs per draw, "
          f"{flops / 1e3:.0f} kFLOP per draw, PRNG {prng}")
    print(f"  plain vmap(init_fn)+apply : {1 / t_plain:12,.0f} draws/s   {flops / t_plain / peak:6.3f} of peak")
    print(f"  study.rejection           : {1 / t_ours:12,.0f} draws/s   {flops / t_ours / peak:6.3f} of peak"
          f"   (x{t_plain / t_ours:.2f} vs plain; target {TARGET['sampler_peak_fraction']} of peak)")
    print(f"  prior draws alone (RNG)   : {1 / t_rng:12,.0f} draws/s   -> bound {flops / t_rng / peak:6.3f} of peak "
          f"for any sampler that draws iid parameters")
    K = GROUPED_READOUTS
    grouped_fn = rejection.make_batch_fn(net, task, batch * K // 8, K)
    rejection.sample_chunk(grouped_fn, key, 2, len(task.test_idx))
    res = rejection.sample_chunk(grouped_fn, jax.random.fold_in(key, 2), n_batches * 8 // K + 2, len(task.test_idx))
    t_grouped = res["seconds"] / res["draws"]
    print(f"  grouped, {K} output layers per hidden draw: {1 / t_grouped:12,.0f} (hidden, output) pairs/s, "
          f"x{t_ours / t_grouped:.1f} vs study.rejection (pairs correlated within a group: see [grouped rejection])")
    return flops / t_ours / peak


GROUPED_READOUTS = 128  # output layers per hidden draw, as configs/e1_quick.toml


def bench_grouped(net, ms, seconds):
    """Effective exact-P_B samples per second: plain rejection (independent fits) against grouped
    rejection (K output layers per hidden-layer draw, study/rejection.py), whose fits count over the
    largest design effect of the ten most frequent functions, measured from the batches as in the
    analysis (analysis.stats.design_effects). Each sampler runs about `seconds` per m."""
    from analysis import stats as astats
    print(f"\n[grouped rejection] 7-40-40-1, |E|=10, majority target: effective samples/s, plain vs "
          f"{GROUPED_READOUTS} output layers per hidden draw")
    print(f"  {'m':>3} {'acceptance':>11} {'plain ESS/s':>12} {'grouped pairs/s':>16} {'design effect':>14} "
          f"{'grouped ESS/s':>14} {'ratio':>7}")
    for m in ms:
        task = make_task(7, "majority", m, 10, 0)
        key = jax.random.key(0, impl="rbg")
        rates = {}
        for K, batch in ((1, 1024), (GROUPED_READOUTS, 256 * GROUPED_READOUTS)):  # 1024: E1 plain rejection's batch
            fn = rejection.make_batch_fn(net, task, batch, K)
            first = rejection.sample_chunk(fn, key, 4, 10)
            n_batches = max(16, int(seconds / max(first["seconds"] / 4, 1e-6)))
            res = rejection.sample_chunk(fn, jax.random.fold_in(key, 1), n_batches, 10)
            d = astats.chunk_design_effects(res, TOP_FUNCTIONS_TRACED)
            design = max(1.0, float(d.max())) if K > 1 and len(d) else 1.0
            rates[K] = (res["draws"] / res["seconds"], res["accepted"] / res["seconds"] / design, design,
                        res["accepted"] / res["draws"])
        (_, plain, _, acc), (pairs, grouped, design, _) = rates[1], rates[GROUPED_READOUTS]
        print(f"  {m:>3} {acc:11.2e} {plain:12,.0f} {pairs:16,.0f} {design:14.2f} {grouped:14,.0f} "
              f"{grouped / plain:7.1f}x")


def one_at_a_time(net, task, setting, max_steps):
    """The straightforward baseline: one network, a jit-compiled optax step, a Python loop.
    Returns keys -> total steps; the step is compiled once, on the first call (warm it up before
    timing: the timed calls must not pay for compilation)."""
    opt = sgd.make_optimizer(setting)
    ell = sgd.per_example_loss(setting.loss)
    x_S = jnp.asarray(task.x_train)
    y_S = jnp.asarray(np.where(task.y_train, 1.0, -1.0), jnp.float32)
    m, B = len(y_S), setting.batch_size
    fits = lambda theta: jnp.all((net.apply_flat(theta, x_S) > 0) == (y_S > 0))

    @jax.jit
    def step(theta, state, idx):
        grads = jax.grad(lambda t: jnp.mean(ell(net.apply_flat(t, x_S[idx]), y_S[idx])))(theta)
        updates, state = opt.update(grads, state, theta)
        theta = optax.apply_updates(theta, updates)
        return theta, state, fits(theta)

    def run(keys):
        rng = np.random.default_rng(0)
        steps_total = 0
        for key in keys:
            theta = net.sample_one(key)
            state = opt.init(theta)
            fitted = bool(fits(theta))
            steps = 0
            while not fitted and steps < max_steps:
                if steps % (m // B) == 0:
                    order = rng.permutation(m)
                pos = steps % (m // B)
                theta, state, fitted = step(theta, state, jnp.asarray(order[pos * B:(pos + 1) * B]))
                fitted, steps = bool(fitted), steps + 1
            steps_total += steps
        return steps_total

    return run


def bench_sgd(peak, net, task, setting, runs, loop_runs, pool=128):
    cfg = SGDConfig(pool=pool, max_steps=10_000, check_every=4, settings=(setting,))
    trainer = sgd.make_chunk_trainer(net, task, setting, cfg, runs)
    key = jax.random.key(0)
    jax.block_until_ready(trainer(key, 0))
    t_pop = float("inf")
    for rep in range(1, 3):  # best of two chunks of fresh runs
        t = time.perf_counter()
        out = jax.device_get(trainer(key, rep * runs))
        t_pop = min(t_pop, time.perf_counter() - t)
    keys = [jax.random.fold_in(jax.random.key(1), r) for r in range(loop_runs + 2)]
    loop = one_at_a_time(net, task, setting, 10_000)
    loop(keys[:2])  # compiles the step (and the eager ops' kernels) outside the timing
    t_loop = float("inf")
    for _ in range(3):  # best of three: the loop is dispatch-bound and its timing is noisy
        t = time.perf_counter()
        loop_steps = loop(keys[2:])
        t_loop = min(t_loop, time.perf_counter() - t)
    # What XLA reaches on these per-network matmuls at all: 64 forward passes in a loop, on S and on
    # a minibatch of the setting's size, for one pool's worth of networks split over the same devices
    # as the population (no training).
    n_dev = devices.dividing_devices(pool, runs)  # the population's own split
    theta = net.sample_prior(key, pool)

    def forward_fraction(x_NxI):
        def forwards(theta_PxD):  # each pass depends on the last, so XLA cannot hoist or merge them
            return jax.lax.fori_loop(0, 64, lambda i, th: th + 1e-9 * net.apply_population(th, x_NxI).mean(),
                                     theta_PxD)
        spread = devices.over_population(forwards, n_dev, devices.SPLIT, devices.SPLIT)
        t_fwd = timed(spread, theta, repeat=5)
        return 64 * 2 * net.macs_per_input * len(x_NxI) * pool / t_fwd / peak

    fwd_S = forward_fraction(jnp.asarray(task.x_train))
    fwd_B = forward_fraction(jnp.asarray(task.x_train[:setting.batch_size]))
    fps = sgd.useful_flops_per_step(net, task, setting)
    pop_rate, loop_rate = runs / t_pop, loop_runs / t_loop
    print(f"\n[SGD population] m={len(task.train_idx)}, {setting.optimizer} lr={setting.lr}, batch {setting.batch_size}, "
          f"loss {setting.loss}, pool {pool} over {n_dev} device(s); {fps / 1e3:.0f} kFLOP per step")
    print(f"  one-at-a-time optax loop : {loop_rate:10,.1f} runs/s  (mean {loop_steps / loop_runs:.1f} steps, "
          f"{fps * loop_steps / t_loop / peak:.4f} of peak)")
    print(f"  study.sgd population     : {pop_rate:10,.1f} runs/s  (mean {out['steps'].mean():.1f} steps, "
          f"{fps * out['steps'].sum() / t_pop / peak:.4f} of peak; target {TARGET['sgd_peak_fraction']})")
    print(f"  forward passes on S alone: {fwd_S:10.4f} of peak (what XLA reaches on these per-network matmul "
          f"shapes, without training)")
    print(f"  ... on a minibatch alone : {fwd_B:10.4f} of peak ({setting.batch_size} rows per network, the shape of "
          f"the training step's forward and backward products)")
    step_ratio = (out["steps"].sum() / t_pop) / (loop_steps / t_loop)
    # Estimated ceiling: a step that did nothing but its check (a forward on S) at the S-forward rate and
    # its forward and backward on the minibatch (3 minibatch forwards) at the minibatch-forward rate.
    fwd_flops = 2 * net.macs_per_input
    t_step = fwd_flops * len(task.train_idx) / (fwd_S * peak) + 3 * fwd_flops * setting.batch_size / (fwd_B * peak)
    ceiling_rate = 1 / (t_step * out["steps"].mean())
    print(f"  speed-up                 : x{pop_rate / loop_rate:.1f} runs/s  (target x{TARGET['sgd_speedup_vs_loop']:.0f}); "
          f"x{step_ratio:.1f} in training steps/s (the two arms' runs differ in mean length)")
    print(f"  estimated ceiling        : {ceiling_rate:10,.1f} runs/s, x{ceiling_rate / loop_rate:.1f} over the loop, "
          f"{fps / t_step / peak:.4f} of peak (every step's products at the forward-pass rates above, no other work)")
    return pop_rate / loop_rate


def bench_mcmc_vs_rejection(net, ms, chains, n_keep, thin, rej_draws):
    """Per training-set size m: rejection's accepted (independent) samples per second against
    MCMC's effective samples per second (the smallest ESS over the traced summaries, per second
    of sampling after burn-in). Chains start from SGD solutions, so every m is reachable."""
    print(f"\n[MCMC vs rejection] 7-40-40-1, |E|=10; MCMC: {chains} chains, thin {thin}, {n_keep} kept per chain")
    print(f"  {'m':>3} {'acceptance':>11} {'rejection acc/s':>16} {'MCMC ESS/s':>11} {'MCMC/rej':>9}")
    setting = SGDSetting("init", "sgd", 0.1, 2, "ce")
    crossover = None
    for m in ms:
        task = make_task(7, "majority", m, 10, 0)
        batch_fn = rejection.make_batch_fn(net, task, 4096)
        key = jax.random.key(0, impl="rbg")
        rejection.sample_chunk(batch_fn, key, 2, 10)
        res = rejection.sample_chunk(batch_fn, jax.random.fold_in(key, 1), rej_draws // 4096, 10)
        acc_rate = res["accepted"] / res["seconds"]
        cfg = SGDConfig(pool=chains, max_steps=10_000, check_every=4, settings=(setting,))
        out = sgd.make_chunk_trainer(net, task, setting, cfg, 2 * chains, keep_params=True)(jax.random.key(m), 0)
        theta0 = np.asarray(out["theta"])[np.asarray(out["fitted"])][:chains]
        runner = mcmc.make_chain_runner(net, task, 32, thin)
        burn = mcmc.run_chains(net, task, jax.random.key(1), theta0, n_keep=32, thin=thin, burn_in=200 * thin // 10,
                               runner=runner, keep_per_call=32)
        run = mcmc.run_chains(net, task, jax.random.key(1), burn, n_keep=n_keep, thin=thin, runner=runner,
                              keep_per_call=32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            diag = mcmc.diagnostics(run.traces)
        ess = float(diag.loc[diag["summary"] != "proposals", "ess_bulk"].min())
        ess_rate = ess / run.seconds
        ratio = ess_rate / acc_rate if acc_rate > 0 else float("inf")
        if crossover is None and ratio > 1:
            crossover = m
        acc = res["accepted"] / res["draws"]
        acc_text = f"{acc:11.2e}" if res["accepted"] else f"  <{1 / res['draws']:8.1e}"
        print(f"  {m:>3} {acc_text} {acc_rate:16,.1f} {ess_rate:11,.1f} {ratio:9.2f}")
    print(f"  MCMC yields more effective samples per second than rejection from m = {crossover} on"
          if crossover else "  rejection wins at every m measured")


def bench_ep(net, cases, n_functions):
    """Milliseconds per function of EP's log P_B(f|S) on the NNGP kernel: batched damped parallel
    EP (study/ep_batch.py, what the nngp stage runs) against the sequential sweep one function at a
    time (study/nngp.py, warm-started from S's sites), on the same functions: random ones on
    |E| = 10, and at Mingard's |E| = 96 the target's labels on E with 0-30% of them flipped."""
    from study import ep_batch
    print(f"\n[NNGP EP] ms per function, batched (study/ep_batch.py) vs one at a time (study/nngp.py)")
    for m, n_test, sigma_b, target in cases:
        task = make_task(7, target, m, n_test, 0)
        net_b = build_network(NetworkConfig(widths=(40, 40), sigma_w=1.0, sigma_b=sigma_b), 7)
        K = nngp.nngp_kernel(net_b, np.concatenate([task.x_train, task.x_test]))
        rng = np.random.default_rng(0)
        fs = (rng.random((n_functions, n_test)) < 0.5 if n_test <= 12 else
              task.y_test[None] ^ (rng.random((n_functions, n_test)) < rng.uniform(0, 0.3, (n_functions, 1))))
        batched, t_batched = time_ep(ep_batch.ep_log_pb_batched, K, task.y_train, fs)
        few = max(4, n_functions // 16)  # the sequential sweep is slow at N = 128: time a subset
        t = time.perf_counter()
        seq = nngp.ep_log_pb_many(K, task.y_train, fs[:few])
        t_seq = (time.perf_counter() - t) / few
        gap = np.nanmax(np.abs(batched.log_pb[:few] - seq.log_pb))
        failed = int((batched.status != "converged").sum())
        sweeps = batched.sweeps[batched.sweeps > 0].mean()
        print(f"  m={m:>3} |E|={n_test:>3} (N={m + n_test}, sigma_b={sigma_b:g}): batched {1e3 * t_batched:8.2f} ms, "
              f"one at a time {1e3 * t_seq:8.2f} ms, x{t_seq / t_batched:.1f}; max |difference| {gap:.1e}; "
              f"failed {failed}/{n_functions}; mean sweeps {sweeps:.0f} vs {seq.sweeps.mean():.0f}")
        # Ceiling: a parallel EP sweep factorises one N x N matrix per function; the batched float64
        # Cholesky alone, times the mean sweeps, bounds the time per function from below.
        from jax.experimental import enable_x64
        with enable_x64():
            N = m + n_test
            spd = jnp.asarray(np.eye(N) + 0.5 * np.ones((N, N)), jnp.float64)
            chol = jax.jit(jax.vmap(lambda d: jnp.linalg.cholesky(spd + jnp.diag(d))))
            t_chol = timed(chol, jnp.ones((256, N), jnp.float64)) / 256
        print(f"           ceiling: one batched float64 Cholesky {1e3 * t_chol:.3f} ms x {sweeps:.0f} sweeps = "
              f"{1e3 * t_chol * sweeps:.2f} ms per function before any other work")


EP_BATCH = 64  # the functions per call of study/ep_batch.py's methods (their default `batch`)


def time_ep(method, K, y_S, fs):
    """(scores, seconds per function) of a batched EP method (study/ep_batch.py) on the rows of fs,
    after one call on a single batch that compiles the batch shape timed."""
    method(K, y_S, fs[:EP_BATCH])
    t = time.perf_counter()
    scores = method(K, y_S, fs)
    return scores, (time.perf_counter() - t) / len(fs)


def bench_image(peak, runs, loop_runs, n_functions):
    """E3's quick setting (configs/e3_quick.toml: 8x8 digits, m = 100, |E| = 20, 64-256-256-1):
    the SGD population's runs/s against the one-at-a-time loop, and EP's ms per function by the
    ratio of normalisers (N = m + |E|) against EP on S with the Gaussian predictive on E, on
    functions like SGD's (the true labels on E with 0-30% of them flipped)."""
    from study import ep_batch
    from study.config import load
    from study.runner import setup
    cfg = load(Path(__file__).resolve().parents[1] / "configs" / "e3_quick.toml")
    task, net = setup(cfg)
    bench_sgd(peak, net, task, cfg.sgd_setting("sgd_b20_ce"), runs, loop_runs, pool=cfg.sgd.pool)
    K = nngp.nngp_kernel(net, np.concatenate([task.x_train, task.x_test]))
    n_test = len(task.test_idx)
    rng = np.random.default_rng(0)
    fs = task.y_test[None] ^ (rng.random((n_functions, n_test)) < rng.uniform(0, 0.3, (n_functions, 1)))
    print(f"\n[NNGP EP, image task] m={len(task.train_idx)}, |E|={n_test}, {net.n_params} parameters: "
          f"ms per function ({n_functions} functions, batches of {EP_BATCH})")
    scores = {}
    for name, fn in (("ratio", ep_batch.ep_log_pb_batched), ("predictive", ep_batch.ep_log_pb_predictive)):
        scores[name], t = time_ep(fn, K, task.y_train, fs)
        failed = int((scores[name].status != "converged").sum())
        print(f"  {name:<10}: {1e3 * t:8.3f} ms per function; failed {failed}/{n_functions}")
    diff = scores["predictive"].log_pb - scores["ratio"].log_pb
    print(f"  predictive - ratio: mean {np.nanmean(diff):+.3f} nats, sd {np.nanstd(diff):.3f}, "
          f"max |.| {np.nanmax(np.abs(diff)):.3f}")


def bench_posterior_points(batches):
    """E3G's quick setting (configs/e3g_quick.toml: 8x8 digits, m = 10, 64-256-256-1): prior draws
    per second judged on S by plain rejection (every parameter drawn, as in one batch of
    mcmc.init_from_rejection) against pre-activation rejection (study/preactivations.py); both have the same law, so
    the ratio of draws per second is the ratio of zero-error points per second."""
    from study import preactivations
    from study.config import load
    from study.encoding import fits
    from study.runner import setup
    cfg = load(Path(__file__).resolve().parents[1] / "configs" / "e3g_quick.toml")
    task, net = setup(cfg)
    x, y, batch = jnp.asarray(task.x_train), jnp.asarray(task.y_train), 4096
    plain = jax.jit(lambda k: fits(net.apply_population(net.sample_prior(k, batch), x), y))
    fitted, _ = preactivations._compiled(preactivations.dense_layers(net), net.unravel(jnp.zeros(net.n_params)),
                                          batch, 64)
    x_flat = x.reshape(len(x), -1)
    print(f"\n[posterior points, image task] m={len(task.train_idx)}, {net.n_params} parameters: prior draws "
          f"judged on S per second (batches of {batch})")
    for impl in ("threefry2x32", "rbg"):
        key = jax.random.key(0, impl=impl)
        t_plain = timed(plain, key, repeat=max(1, batches // 8))
        t_pre = timed(lambda k: fitted(k, x_flat, y, 0)[0], key, repeat=batches)
        print(f"  {impl:<12}: plain {batch / t_plain:9,.0f} draws/s, pre-activations {batch / t_pre:9,.0f} draws/s "
              f"(x{t_plain / t_pre:.1f})")


def bench_geometry(net, ms, points):
    """Seconds per point of every geometry measure (study/geometry.py, both losses, batched over
    points) against the baseline of a dense Hessian and its full eigendecomposition (one loss)."""
    print(f"\n[geometry] 7-40-40-1 (D={net.n_params}), {points} points per batch, quick-profile settings")
    for m in ms:
        task = make_task(7, "majority", m, 10, 0)
        y = np.where(task.y_train, 1.0, -1.0)
        measure = geometry.make_point_measures(net, task.x, task.train_idx, y, top_k=10, lanczos_matvecs=40,
                                               hutchinson_samples=64, delta=1e-3, directions=64,
                                               radii_G=np.geomspace(1e-3, 100, 48))
        theta = mcmc.init_from_rejection(net, task, jax.random.key(0), points, max_draws=2**26) if m <= 16 else \
            jax.vmap(net.sample_one)(jax.random.split(jax.random.key(0), points))
        keys = jax.random.split(jax.random.key(1), points)
        t_all = timed(measure, jnp.asarray(theta), keys, repeat=1) / points
        loss_fn = geometry.training_loss(net, "mse", jnp.asarray(task.x_train), jnp.asarray(y, jnp.float32))
        dense = jax.jit(lambda th: jnp.linalg.eigvalsh(geometry.dense_hessian(loss_fn, th)))
        t_dense = timed(dense, jnp.asarray(theta[0]), repeat=2)
        print(f"  m={m:>3}: all measures {1e3 * t_all:8.1f} ms/point; dense Hessian + eigh (one loss) "
              f"{1e3 * t_dense:8.1f} ms/point; ratio x{t_dense / t_all:.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)")
    args = parser.parse_args(argv)
    scale = 4 if args.quick else 1
    use_every_core()
    print(f"devices: {jax.devices()}")
    for name in args.only or SECTIONS:
        SECTIONS[name](scale)
    return 0


@functools.cache
def peak_once() -> float:
    """The sgemm peak, measured (and printed) on first use by a section that needs it."""
    peak = sgemm_peak()
    print(f"[peak] jax sgemm 2048^3 float32: {peak / 1e9:.1f} GFLOP/s")
    return peak


@functools.cache
def net(sigma_b: float = 0.0):
    """7-40-40-1 (built on first use: after use_every_core has set the devices)."""
    return build_network(NetworkConfig(widths=(40, 40), sigma_w=1.0, sigma_b=sigma_b), 7)


QUICK_TASK = make_task(7, "majority", 10, 10, 0)
ALL_INPUTS = make_task(7, "majority", 32, 96, 0)
# E1M, Mingard's setting: sigma_b = 1, the "0011" x 32 target, m = 32, E = the other 96 inputs
E1M_TASK = make_task(7, "0x" + "3" * 32, 32, 96, 0)
SECTIONS = {
    "sampler": lambda scale: [
        *(bench_sampler(peak_once(), net(), QUICK_TASK, "quick-profile task (m=10, |E|=10)", 1024, 512 // scale, prng)
          for prng in ("threefry2x32", "rbg")),
        bench_sampler(peak_once(), net(), ALL_INPUTS, "all 128 inputs (m=32, |E|=96)", 1024, 256 // scale, "rbg")],
    "sgd": lambda scale: [
        bench_sgd(peak_once(), net(), make_task(7, "majority", 32, 16, 0), SGDSetting("ref", "sgd", 0.1, 8, "ce"),
                  8192 // scale, 100 // scale),
        bench_sgd(peak_once(), net(), QUICK_TASK, SGDSetting("quick_b2", "sgd", 0.1, 2, "ce"), 16384 // scale,
                  100 // scale),
        bench_sgd(peak_once(), net(1.0), E1M_TASK,
                  SGDSetting("e1m_b8", "sgd", 0.05, 8, "ce"), 8192 // scale, 50 // scale)],
    "grouped": lambda scale: bench_grouped(net(), (10, 16), 20 / scale),
    "mcmc": lambda scale: bench_mcmc_vs_rejection(net(), (10, 16, 24, 32), 256, 256 // scale, 10, 2**23 // scale),
    "ep": lambda scale: bench_ep(net(), [(10, 10, 0.0, "majority"), (32, 10, 0.0, "majority"),
                                       (64, 10, 0.0, "majority"), (32, 96, 1.0, "0x" + "3" * 32),
                                       (64, 64, 1.0, "0x" + "3" * 32)], 512 // scale),
    "geometry": lambda scale: bench_geometry(net(), (10, 32), 128 // scale),
    "posterior_points": lambda scale: bench_posterior_points(32 // scale),
    "image": lambda scale: bench_image(peak_once(), 256 // scale, 20 // scale, 1024 // scale),
    "stages": bench_stage_scaling,
}


if __name__ == "__main__":
    raise SystemExit(main())

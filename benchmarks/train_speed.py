"""MF training speed: the project's Trainer loop vs the seed article's code as written.

    .venv/bin/python benchmarks/train_speed.py [--data-dir ../shared/data/ml-100k] [--epochs 10]

Same data (ML-100k u.data, shuffled with seed 42, 80% train / 20% test), same epochs, same
embedding size. "article" is seed 002's example 3 as written: Keras Embedding + bias
embeddings, Dot, Add, Adam, MSE, `model.fit` with its default batch size 32 (here with
tf_keras, and the L2 of example 2 on the embeddings). "movierec" is
`movierec.components.mf.train.fit` with its defaults (batch 4096, per-example L2, one graph
call per epoch with the steps in a `tf.while_loop`, Adam as plain TF ops). Prints examples/s for both, the ratio, and test RMSE for both.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def load(data_dir: str):
    from movierec.components.data import readers
    from movierec.components.training_data import Interactions

    recs = list(readers.read_ratings(data_dir))
    users = {u: i for i, u in enumerate(sorted({r.user_id for r in recs}))}
    movies = {m: i for i, m in enumerate(sorted({r.movie_id for r in recs}))}
    u = np.array([users[r.user_id] for r in recs])
    m = np.array([movies[r.movie_id] for r in recs])
    y = np.array([r.rating for r in recs], np.float32)
    perm = np.random.default_rng(42).permutation(len(recs))
    cut = int(0.8 * len(recs))

    def part(ix):
        return Interactions(u[ix], m[ix], y[ix], np.zeros(len(ix), np.int64))
    return part(perm[:cut]), part(perm[cut:]), len(users), len(movies)


def article(train, test, n_users, n_movies, epochs, dim):
    """Seed 002, example 3 (+ example 2's L2), trained with model.fit(batch_size=32)."""
    import tf_keras as keras
    from tf_keras import regularizers

    user_input = keras.layers.Input(shape=(1,))
    movie_input = keras.layers.Input(shape=(1,))
    user_embedding = keras.layers.Embedding(n_users, dim, embeddings_regularizer=regularizers.l2(0.01))(user_input)
    movie_embedding = keras.layers.Embedding(n_movies, dim, embeddings_regularizer=regularizers.l2(0.01))(movie_input)
    user_bias = keras.layers.Embedding(n_users, 1)(user_input)
    movie_bias = keras.layers.Embedding(n_movies, 1)(movie_input)
    user_vec = keras.layers.Flatten()(user_embedding)
    movie_vec = keras.layers.Flatten()(movie_embedding)
    dot_product = keras.layers.Dot(axes=1)([user_vec, movie_vec])
    bias_sum = keras.layers.Add()([keras.layers.Flatten()(user_bias), keras.layers.Flatten()(movie_bias)])
    output = keras.layers.Add()([dot_product, bias_sum])
    model = keras.Model(inputs=[user_input, movie_input], outputs=output)
    model.compile(loss="mse", optimizer="adam")
    start = time.perf_counter()
    model.fit([train.user_idx[:, None], train.movie_idx[:, None]], train.rating, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    pred = model.predict([test.user_idx[:, None], test.movie_idx[:, None]], batch_size=8192, verbose=0)[:, 0]
    rmse = float(np.sqrt(np.mean((np.clip(pred, 1, 5) - test.rating) ** 2)))
    return len(train) * epochs / seconds, seconds, rmse


def movierec(train, test, n_users, n_movies, epochs, dim):
    from movierec.components.mf import train as mf_train
    from movierec.config import MFConfig

    config = MFConfig(embedding_dim=dim, epochs=epochs)
    model, result = mf_train.fit(config, train, n_users, n_movies, None, (1.0, 5.0))
    rmse = mf_train.rating_errors(model, test, (n_users, n_movies), (1.0, 5.0))["rmse"]
    print(f"  (movierec after the first epoch, without tracing: "
          f"{result.steady_examples_per_second:,.0f} examples/s)", flush=True)
    return result.examples_per_second, result.fit_seconds, rmse


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "ml-100k"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dim", type=int, default=32)
    args = p.parse_args()
    train, test, n_users, n_movies = load(args.data_dir)
    print(f"{len(train)} train / {len(test)} test ratings, {args.epochs} epochs, dim {args.dim}", flush=True)
    rows = []
    for name, fn in (("movierec Trainer loop", movierec), ("article (model.fit, batch 32)", article)):
        eps, seconds, rmse = fn(train, test, n_users, n_movies, args.epochs, args.dim)
        rows.append((name, eps, seconds, rmse))
        print(f"  {name}: {eps:,.0f} examples/s, {seconds:.1f} s, test RMSE {rmse:.4f}", flush=True)
    print()
    print("| training | examples/s | fit seconds | test RMSE |")
    print("| --- | --- | --- | --- |")
    for name, eps, seconds, rmse in rows:
        print(f"| {name} | {eps:,.0f} | {seconds:.1f} | {rmse:.4f} |")
    print(f"\nspeed-up: {rows[0][1] / rows[1][1]:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

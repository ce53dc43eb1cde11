"""Masked top-k and the exported MF SavedModel, on hand-built values."""
import os

import numpy as np
import pytest
import tensorflow as tf

from movierec.components.mf import export
from movierec.components.mf.model import MatrixFactorization
from movierec.components.recommend import RatedItems, masked_top_k
from movierec.components.training_data import Catalog
from movierec.serving.servability import NotServableError, check_servable


def top(scores, mask, k):
    rows = [r for r, _ in mask]
    cols = [c for _, c in mask]
    idx, sc, valid = masked_top_k(tf.constant(scores, tf.float32), tf.constant(rows, tf.int64),
                                  tf.constant(cols, tf.int64), tf.constant(k))
    return idx.numpy().tolist(), sc.numpy().tolist(), valid.numpy().tolist()


def test_masked_items_never_returned_and_order_is_exact():
    idx, sc, valid = top([[1, 5, 3, 4], [2, 2, 2, 2]], [(0, 1), (1, 0)], 2)
    assert idx == [[3, 2], [1, 2]]  # ties keep the lower index first
    assert sc == [[4, 3], [2, 2]]
    assert valid == [[True, True], [True, True]]


def test_mask_is_minus_infinity_not_zero():
    # every score negative: a mask to 0 would put the rated movie first
    idx, sc, valid = top([[-10.0, -20.0, -30.0]], [(0, 0)], 2)
    assert idx == [[1, 2]] and sc == [[-20.0, -30.0]]


def test_short_catalog_is_padded_and_flagged_never_filled_with_rated():
    idx, sc, valid = top([[1, 2, 3, 4]], [(0, 3), (0, 0)], 5)
    assert idx == [[2, 1, -1, -1, -1]]
    assert sc == [[3, 2, 0, 0, 0]]
    assert valid == [[True, True, False, False, False]]


def test_rated_items_csr():
    r = RatedItems.from_pairs(np.array([1, 0, 1, 1, 2, 0]), np.array([2, 1, 0, 2, 0, 9]),
                              num_users=2, num_movies=3)
    assert r.row(0).tolist() == [1]          # (0, 9) is an OOV movie: ignored
    assert r.row(1).tolist() == [0, 2]       # duplicate (1, 2) kept once, sorted
    assert r.row(2).tolist() == []           # the OOV user row is empty; (2, 0) ignored
    assert r.num_users == 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """users u1,u2; movies a,b,c; hand-set factors (dim 2), mean 3, movie bias b = +0.5."""
    tmp = tmp_path_factory.mktemp("mf")
    (tmp / "users").write_text("u1\nu2\n")
    (tmp / "movies").write_text("a\nb\nc\n")
    model = MatrixFactorization(2, 3, embedding_dim=2, l2=0.0, global_mean=3.0)
    model({"user_idx": tf.constant([0], tf.int64), "movie_idx": tf.constant([0], tf.int64)})
    model.user_embedding.set_weights([np.array([[1, 0], [0, 1], [0, 0]], np.float32)])
    model.movie_embedding.set_weights([np.array([[1, 0], [0, 2], [1, 1], [0, 0]], np.float32)])
    model.user_bias.set_weights([np.zeros((3, 1), np.float32)])
    model.movie_bias.set_weights([np.array([[0], [0.5], [0], [0]], np.float32)])
    catalog = Catalog(movie_ids=["a", "b", "c"], titles=["A", "B", "C"], genre_names=["Drama", "Comedy"],
                      genre_matrix=np.array([[1, 0], [0, 1], [1, 1]], np.float32))
    rated = RatedItems.from_pairs(np.array([0]), np.array([0]), 2, 3)  # u1 rated a
    out = str(tmp / "export")
    export.export(model, out, user_vocab_path=str(tmp / "users"), movie_vocab_path=str(tmp / "movies"),
                  user_ids=["u1", "u2"],
                  catalog=catalog, rated=rated, popularity=np.array([5, 1, 3], np.float32),
                  rating_range=(1.0, 5.0), max_k=10, metadata={"eval_rmse": 1.0})
    # the vocabulary files were copied into the SavedModel: the originals may go away
    os.remove(tmp / "users")
    os.remove(tmp / "movies")
    return out


def recommend(model, users, k=3, exclude=None):
    """The `recommend` signature: k an int for every row or a list (one per row)."""
    ks = k if isinstance(k, list) else [k] * len(users)
    return model.signatures["recommend"](
        user_id=tf.constant(users, tf.string), k=tf.constant(ks, tf.int32),
        exclude_movie_ids=tf.constant(exclude if exclude is not None else [[""]] * len(users), tf.string))


def strings(t) -> list:
    return t.numpy().astype(str).tolist()


def test_reloaded_model_recommends_unseen_by_exact_score(exported):
    model = tf.saved_model.load(exported)
    out = recommend(model, ["u1", "u2", "zz"], k=3)
    ids = strings(out["movie_ids"])
    # u1: scores a=4 (rated, masked), b=3.5, c=4 -> c, b, padding
    # u2: a=3, b=5.5, c=4 -> b, c, a;  zz: unknown -> popularity a=5, c=3, b=1
    assert ids == [["c", "b", ""], ["b", "c", "a"], ["a", "c", "b"]]
    np.testing.assert_allclose(out["scores"].numpy(), [[4, 3.5, 0], [5.5, 4, 3], [5, 3, 1]])
    assert out["valid"].numpy().tolist() == [[True, True, False], [True] * 3, [True] * 3]
    assert out["user_known"].numpy().tolist() == [True, True, False]
    assert strings(out["titles"])[0] == ["C", "B", ""]
    assert strings(out["genres"])[0] == ["Drama|Comedy", "Comedy", ""]


def test_serving_default_takes_only_user_id_and_returns_the_top_10(exported):
    model = tf.saved_model.load(exported)
    out = model.signatures["serving_default"](user_id=tf.constant(["u1", "u2", "zz"]))
    # the same lists as above, padded to 10 (3 movies in the catalog)
    assert strings(out["movie_ids"]) == [["c", "b"] + [""] * 8, ["b", "c", "a"] + [""] * 7,
                                         ["a", "c", "b"] + [""] * 7]
    assert out["valid"].numpy().sum(axis=1).tolist() == [2, 3, 3]
    np.testing.assert_allclose(out["scores"].numpy()[:, :3], [[4, 3.5, 0], [5.5, 4, 3], [5, 3, 1]])
    assert out["user_known"].numpy().tolist() == [True, True, False]


def test_k_per_row(exported):
    model = tf.saved_model.load(exported)
    out = recommend(model, ["u2", "zz", "u1"], k=[1, 3, 2])
    # width max(k) = 3; u2 keeps its best (b), zz all three, u1 its two unseen movies
    assert strings(out["movie_ids"]) == [["b", "", ""], ["a", "c", "b"], ["c", "b", ""]]
    np.testing.assert_allclose(out["scores"].numpy(), [[5.5, 0, 0], [5, 3, 1], [4, 3.5, 0]])
    assert out["valid"].numpy().tolist() == [[True, False, False], [True] * 3, [True, True, False]]
    assert strings(out["titles"])[0] == ["B", "", ""]


def merged_as_tf_serving(requests: list[dict]) -> dict:
    """What TF Serving's batching session feeds for concurrent requests: each input
    concatenated along dimension 0, a narrower [B, E] input first widened to the largest E
    with that request's first element (pad_variable_length_inputs)."""
    merged = {}
    for alias in requests[0]:
        parts = [np.asarray(r[alias], object if alias != "k" else np.int32) for r in requests]
        if parts[0].ndim == 2:
            width = max(p.shape[1] for p in parts)
            parts = [np.pad(p, [(0, 0), (0, width - p.shape[1])], constant_values=p.flat[0]) for p in parts]
        merged[alias] = np.concatenate(parts)
    return merged


def test_a_merged_batch_gives_each_request_its_own_answer(exported):
    model = tf.saved_model.load(exported)
    fn = model.signatures["recommend"]
    first = {"user_id": ["u2"], "k": [1], "exclude_movie_ids": [["", "b"]]}
    second = {"user_id": ["zz", "u1"], "k": [2, 3], "exclude_movie_ids": [["", "a", "x"], ["", "c", ""]]}
    alone = [fn(**{a: tf.constant(v) for a, v in r.items()}) for r in (first, second)]
    assert strings(alone[0]["movie_ids"]) == [["c"]]                      # u2 without b
    assert strings(alone[1]["movie_ids"]) == [["c", "b", ""], ["b", "", ""]]  # zz without a; u1 without c
    merged = merged_as_tf_serving([first, second])
    assert merged["exclude_movie_ids"].tolist() == [["", "b", ""], ["", "a", "x"], ["", "c", ""]]
    out = fn(**{a: tf.constant(v) for a, v in merged.items()})
    padding = {"movie_ids": "", "titles": "", "genres": "", "scores": 0.0, "valid": False}
    for alias, pad in padding.items():
        read = strings if isinstance(pad, str) else (lambda t: t.numpy().tolist())
        together = read(out[alias])
        # each request's rows as alone; beyond its own width, up to the merged max(k) = 3: padding
        assert together[0] == read(alone[0][alias])[0] + [pad, pad], alias
        assert together[1:] == read(alone[1][alias]), alias
    assert out["user_known"].numpy().tolist() == [True, False, True]


def test_bad_k_and_exclude_shape_are_rejected(exported):
    model = tf.saved_model.load(exported)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"k must be >= 1 and <= 10, got\] \[0\]"):
        recommend(model, ["u1"], k=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"k must be >= 1 and <= 10, got\] \[11 -1\]"):
        recommend(model, ["u1", "u2", "zz"], k=[11, 2, -1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must have one value per user_id"):
        recommend(model, ["u1", "u2"], k=[2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="exclude_movie_ids must have one row per user_id"):
        recommend(model, ["u1", "u2"], k=2, exclude=[["a"]])


def test_predict_rating_signature(exported):
    model = tf.saved_model.load(exported)
    out = model.signatures["predict_rating"](user_id=tf.constant(["u1", "u2", "zz", "u1"]),
                                            movie_id=tf.constant(["b", "b", "b", "nope"]))
    # u1,b: 3 + 0.5 + <(1,0),(0,2)> = 3.5; u2,b: 3 + 0.5 + 2 = 5.5 -> clipped to 5
    # zz,b: unknown user -> mean + movie bias = 3.5; u1,nope: unknown movie -> mean = 3
    np.testing.assert_allclose(out["rating"].numpy(), [3.5, 5.0, 3.5, 3.0])
    assert out["user_known"].numpy().tolist() == [True, True, False, True]
    assert out["movie_known"].numpy().tolist() == [True, True, True, False]


def test_every_input_has_a_batch_dimension_and_none_is_optional(exported):
    from tensorflow.python.saved_model import loader_impl
    sigs = loader_impl.parse_saved_model(exported).meta_graphs[0].signature_def
    outputs = ["genres", "movie_ids", "scores", "titles", "user_known", "valid"]
    for name, inputs in (("serving_default", ["user_id"]), ("recommend", ["exclude_movie_ids", "k", "user_id"]),
                         ("predict_rating", ["movie_id", "user_id"])):
        sig = sigs[name]
        assert sorted(sig.inputs) == inputs and not sig.defaults, name
        assert all(len(i.tensor_shape.dim) >= 1 and i.tensor_shape.dim[0].size == -1
                   for i in sig.inputs.values()), name
    assert sorted(sigs["serving_default"].outputs) == sorted(sigs["recommend"].outputs) == outputs
    info = check_servable(exported)
    assert info["signatures"] == ["predict_rating", "recommend", "serving_default"]
    assert os.path.isfile(os.path.join(exported, "assets.extra", "movierec.json"))


def test_servability_check_rejects_py_function(tmp_path):
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def f(self, x):
            return {"y": tf.py_function(lambda v: v * 2, [x], tf.float32)}
    m = M()
    tf.saved_model.save(m, str(tmp_path / "m"), signatures={"serving_default": m.f})
    with pytest.raises(NotServableError, match="EagerPyFunc"):
        check_servable(str(tmp_path / "m"))


def test_export_writes_warmup_requests_that_replay(exported):
    from movierec.serving import warmup
    from movierec.serving.servable import Servable
    requests = warmup.read_warmup_requests(exported)
    assert [r.model_spec.signature_name for r in requests] == ["serving_default", "recommend", "predict_rating"]
    assert [sorted(r.inputs) for r in requests[:2]] == [["user_id"], ["exclude_movie_ids", "k", "user_id"]]
    assert warmup.replay(Servable("mf", 1, exported), requests) == 3


def test_catalog_takes_title_and_multi_hot_genres_per_movie():
    from movierec.components.training_data import MovieRows, build_catalog
    # ratings of movies 1, 0, 1 and the OOV movie (2); genre rows [1], [0, 2], [1], [0]
    movies = MovieRows.first_of(np.array([1, 0, 1, 2]), np.array([b"B", b"A", b"B2", b"X"], object),
                                np.array([0, 1, 3, 4, 5]), np.array([1, 0, 2, 1, 0]))
    # one row per movie, the first: movie 1's second rating (title B2) is not kept
    assert movies.movie_idx.tolist() == [1, 0, 2] and movies.title.tolist() == [b"B", b"A", b"X"]
    assert movies.genre_row_splits.tolist() == [0, 1, 3, 4] and movies.genre_values.tolist() == [1, 0, 2, 0]
    cat = build_catalog(movies, ["a", "b"], ["g0", "g1", "g2"])
    assert cat.titles == ["A", "B"]
    np.testing.assert_array_equal(cat.genre_matrix, [[1, 0, 1], [0, 1, 0]])
    assert cat.genre_strings() == ["g0|g2", "g1"]
    with pytest.raises(ValueError, match=r"1 vocabulary movies have no rating .* \['d'\]"):
        build_catalog(movies, ["a", "b", "c", "d"], ["g0", "g1", "g2"])


def test_movie_rows_refuse_mismatched_lengths_and_repeated_movies():
    from movierec.components.training_data import MovieRows
    with pytest.raises(ValueError, match=r"2 movie indices, 1 titles and 3 genre row splits \(expected 3\)"):
        MovieRows(np.array([0, 1]), np.array([b"A"], object), np.array([0, 0, 0]), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="movie indices must be distinct"):
        MovieRows(np.array([1, 1]), np.array([b"A", b"B"], object), np.array([0, 0, 0]), np.zeros(0, np.int64))
    # concat keeps each movie's first row: movie 1 of the second part is already known
    first = MovieRows(np.array([1]), np.array([b"B"], object), np.array([0, 1]), np.array([4]))
    second = MovieRows(np.array([1, 0]), np.array([b"B2", b"A"], object), np.array([0, 2, 3]), np.array([5, 6, 7]))
    both = MovieRows.concat([first, second])
    assert both.movie_idx.tolist() == [1, 0] and both.title.tolist() == [b"B", b"A"]
    assert both.genre_row_splits.tolist() == [0, 1, 2] and both.genre_values.tolist() == [4, 7]


def test_gather_mask_rows_follow_the_batch_including_empty_rows():
    from movierec.components.recommend import gather_mask
    # users 0: [4, 7], 1: nothing, 2: [1, 2, 3]
    splits = tf.constant([0, 2, 2, 5], tf.int64)
    values = tf.constant([4, 7, 1, 2, 3], tf.int64)
    rows, cols = gather_mask(splits, values, tf.constant([2, 1, 0, 1], tf.int64))
    assert list(zip(rows.numpy().tolist(), cols.numpy().tolist())) == [(0, 1), (0, 2), (0, 3), (2, 4), (2, 7)]
    rows, cols = gather_mask(splits, values, tf.constant([1], tf.int64))
    assert rows.numpy().tolist() == [] and cols.numpy().tolist() == []


def test_masked_top_k_with_k_per_row():
    # row 0 masked at 1: 3, 2, 0 by score; row 1 all tied: lower index first
    idx, sc, valid = top([[1, 5, 3, 4], [2, 2, 2, 2]], [(0, 1)], [1, 3])
    assert idx == [[3, -1, -1], [0, 1, 2]]
    assert sc == [[4, 0, 0], [2, 2, 2]]
    assert valid == [[True, False, False], [True, True, True]]
    idx, _, valid = top([[1, 2]], [], [4])           # k beyond the catalog: padded as well
    assert idx == [[1, 0, -1, -1]] and valid == [[True, True, False, False]]
    idx, _, _ = top(np.zeros((0, 2)), [], np.zeros(0, np.int32))   # no rows: [0, 0]
    assert idx == []


def test_masked_top_k_without_the_padding_step_gives_the_same_answer():
    scores = tf.constant([[1, 5, 3, 4], [2, 2, 2, 2]], tf.float32)
    rows, cols = tf.constant([0, 1], tf.int64), tf.constant([1, 0], tf.int64)
    padded = masked_top_k(scores, rows, cols, tf.constant(3))
    lean = masked_top_k(scores, rows, cols, tf.constant(3), max_k=4)   # max_k <= N: no padding step
    for a, b in zip(padded, lean):
        assert a.numpy().tolist() == b.numpy().tolist()
    assert lean[0].numpy().tolist() == [[3, 2, 0], [1, 2, 3]]


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """`movierec serve` in process on the exported model, as model "mf" version 1."""
    import shutil

    from movierec.serving.model_config import ModelSpec
    from movierec.serving.server import ModelServer, ServerOptions
    base = tmp_path_factory.mktemp("serving") / "mf"
    shutil.copytree(exported, base / "1")
    s = ModelServer([ModelSpec("mf", str(base))], ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0))
    s.start()
    yield s
    s.stop()


def test_rest_instances_with_only_user_id(server):
    import json
    import urllib.request
    body = json.dumps({"instances": [{"user_id": "u1"}, {"user_id": "u2"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/mf:predict", data=body,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        predictions = json.loads(r.read())["predictions"]
    assert [p["movie_ids"] for p in predictions] == [["c", "b"] + [""] * 8, ["b", "c", "a"] + [""] * 7]
    assert [p["valid"] for p in predictions] == [[True] * 2 + [False] * 8, [True] * 3 + [False] * 7]
    assert predictions[0]["scores"] == [4.0, 3.5] + [0.0] * 8 and predictions[0]["user_known"] is True


def test_grpc_request_with_only_user_id(server):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mf"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.array([b"u2"], object)))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert response.model_spec.signature_name == "serving_default"
    ids = tf.make_ndarray(response.outputs["movie_ids"]).astype(str).tolist()
    assert ids == [["b", "c", "a"] + [""] * 7]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_clients_use_serving_default_or_recommend(server, protocol):
    from movierec.serving.client import GrpcClient, RestClient
    client = (GrpcClient(port=server.grpc_port) if protocol == "grpc" else RestClient(port=server.rest_port))
    try:
        plain = client.recommend(["u1", "zz"], model="mf")                      # serving_default
        asked = client.recommend(["u2", "zz"], k=2, model="mf", exclude=[["b"], []])   # recommend
    finally:
        if protocol == "grpc":
            client.close()
    assert [[r.movie_id for r in row] for row in plain] == [["c", "b"], ["a", "c", "b"]]
    assert [[r.movie_id for r in row] for row in asked] == [["c", "a"], ["a", "c"]]
    assert asked[0][0].title == "C" and asked[0][0].score == pytest.approx(4.0)


@pytest.mark.parametrize("protocol", ["--grpc", "--rest"])
def test_movierec_recommend_command(server, protocol, capsys):
    """u2 (vector [0, 1]) scores a 0 + 3, b 2 + 3 + 0.5, c 1 + 3: all three unseen."""
    from movierec import cli
    port = str(server.grpc_port if protocol == "--grpc" else server.rest_port)
    assert cli.main(["recommend", "--user", "u2", "--model", "mf", protocol, "--port", port]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"user u2 (mf, {protocol[2:]}):"
    assert [line.split() for line in lines[1:]] == [["1.", "b", "B", "Comedy", "5.500"],
                                                   ["2.", "c", "C", "Drama|Comedy", "4.000"],
                                                   ["3.", "a", "A", "Drama", "3.000"]]
    assert cli.main(["recommend", "--user", "u2", "-k", "1", "--exclude", "b", "--model", "mf", protocol,
                     "--port", port]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["c"]


@pytest.mark.parametrize("protocol", ["--grpc", "--rest"])
def test_unknown_user_is_named_and_gets_rating_counts_not_scores(server, protocol, capsys):
    """zz is unknown: popularity a 5, c 3, b 1 (training rating counts), said so."""
    from movierec import cli
    port = str(server.grpc_port if protocol == "--grpc" else server.rest_port)
    assert cli.main(["recommend", "--user", "zz", "--model", "mf", protocol, "--port", port]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"user zz (mf, {protocol[2:]}): unknown to the model - the most-rated movies")
    assert "number of training ratings, not a score" in lines[0]
    assert [line.split() for line in lines[1:]] == [["1.", "a", "A", "Drama", "5"],
                                                   ["2.", "c", "C", "Drama|Comedy", "3"],
                                                   ["3.", "b", "B", "Comedy", "1"]]


@pytest.mark.parametrize("protocol", ["--grpc", "--rest"])
def test_recommend_json(server, protocol, capsys):
    import json

    from movierec import cli
    port = str(server.grpc_port if protocol == "--grpc" else server.rest_port)
    assert cli.main(["recommend", "--json", "--user", "u2", "--user", "zz", "-k", "2", "--model", "mf",
                     protocol, "--port", port]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"user_id": "u2", "model": "mf", "known_user": True, "recommendations": [
            {"rank": 1, "movie_id": "b", "title": "B", "genres": ["Comedy"], "score": 5.5},
            {"rank": 2, "movie_id": "c", "title": "C", "genres": ["Drama", "Comedy"], "score": 4.0}]},
        {"user_id": "zz", "model": "mf", "known_user": False, "recommendations": [
            {"rank": 1, "movie_id": "a", "title": "A", "genres": ["Drama"], "training_ratings": 5},
            {"rank": 2, "movie_id": "c", "title": "C", "genres": ["Drama", "Comedy"], "training_ratings": 3}]}]


@pytest.mark.parametrize("k", ["0", "-3", "10001", "two"])
def test_bad_k_is_refused_before_any_call(k, capsys):
    """No server listens on port 1: the command stops at the flag, never reaching a call."""
    from movierec import cli
    with pytest.raises(SystemExit) as stopped:
        cli.main(["recommend", "--user", "u2", "-k", k, "--rest", "--port", "1"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument -k: {k!r} is not a list length: an integer from 1 to 10000" in err


@pytest.mark.parametrize("protocol", ["--grpc", "--rest"])
def test_k_over_the_models_max_k_is_one_clear_line(server, protocol, capsys):
    """The exported model has max_k 10: k 11 passes the flag check and the model refuses it;
    the message is the model's rule, without TensorFlow's graph node names."""
    from movierec import cli
    port = str(server.grpc_port if protocol == "--grpc" else server.rest_port)
    code = cli.main(["recommend", "--user", "u2", "-k", "11", "--model", "mf", protocol, "--port", port])
    assert code == cli.EXIT_PIPELINE_ERROR
    err = capsys.readouterr().err.strip()
    code_name = "INVALID_ARGUMENT" if protocol == "--grpc" else "400"
    assert err == f"error from server: {code_name}: k must be >= 1 and <= 10, got 11", err


@pytest.mark.parametrize("protocol", ["--grpc", "--rest"])
def test_recommend_prints_no_tensorflow_start_up_messages(server, protocol):
    """A fresh `movierec recommend` process: stderr holds nothing (no CUDA, oneDNN or TF-TRT
    lines, no library FutureWarnings), whatever TF_CPP_MIN_LOG_LEVEL the caller had; the
    REST path never loads TensorFlow."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    port = server.grpc_port if protocol == "--grpc" else server.rest_port
    code = ("import sys; from movierec import cli; code = cli.main(sys.argv[1:]); "
            "print('tensorflow' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "recommend", "--user", "u1", protocol, "--port", str(port)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"user u1 (mf, {protocol[2:]}):" and len(lines) == 1 + 2 + 1
    assert lines[-1] == str(protocol == "--grpc")     # TensorFlow loaded: only for the gRPC protos

"""`movierec serve` / `recommend` / `report` on bad input: clear errors, no tracebacks."""
import socket

from movierec import cli


def test_serve_without_models_names_the_folder(tmp_path, capsys):
    assert cli.main(["serve", "--serving-root", str(tmp_path / "empty")]) == cli.EXIT_DATA_ERROR
    assert "no models to serve" in capsys.readouterr().err


def test_serve_with_malformed_model_config(tmp_path, capsys):
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { name: }")
    assert cli.main(["serve", "--model_config_file", str(bad)]) == cli.EXIT_DATA_ERROR
    assert "models.config:" in capsys.readouterr().err


def test_serve_needs_name_and_base_path_together(capsys):
    assert cli.main(["serve", "--model_name", "mf"]) == cli.EXIT_DATA_ERROR
    assert "--model_name and --model_base_path go together" in capsys.readouterr().err


def test_recommend_against_no_server_is_a_clear_error(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert cli.main(["recommend", "--rest", "--user", "1", "--port", str(port)]) == cli.EXIT_PIPELINE_ERROR
    assert "cannot reach 127.0.0.1" in capsys.readouterr().err


def test_report_before_any_run(tmp_path, capsys):
    assert cli.main(["report", "--output-dir", str(tmp_path)]) == cli.EXIT_DATA_ERROR
    assert "run `movierec run` first" in capsys.readouterr().err


def test_serve_refuses_bad_server_settings_naming_them(tmp_path, capsys):
    base = tmp_path / "half"
    base.mkdir()   # no version yet: the settings are checked before anything is served
    for flags, message in ((["--workers", "0"], "workers must be >= 1, got 0"),
                           (["--model-threads", "0"], "model_threads must be >= 1, got 0"),
                           (["--inline-max-rows", "-1"], "inline_max_rows must be >= 0, got -1"),
                           (["--batch_timeout_micros", "-5"], "batch_timeout_micros must be >= 0, got -5"),
                           (["--max-concurrent-requests", "0"], "max_concurrent_requests must be > 0, got 0")):
        code = cli.main(["serve", "--model_name", "half", "--model_base_path", str(base), *flags])
        assert code == cli.EXIT_DATA_ERROR, flags
        assert message in capsys.readouterr().err, flags


def test_serve_on_a_port_in_use_says_so(tmp_path, capsys):
    base = tmp_path / "half"
    base.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["serve", "--model_name", "half", "--model_base_path", str(base),
                         "--port", "0", "--rest_api_port", str(port), "--file_system_poll_wait_seconds", "0"])
    assert code == cli.EXIT_DATA_ERROR
    err = capsys.readouterr().err
    assert "error: serve:" in err and str(port) in err, err


def test_serve_refuses_flag_files_that_do_not_parse_naming_them(tmp_path, capsys):
    base = tmp_path / "half"
    base.mkdir()
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 0 }")
    monitoring = tmp_path / "monitoring.txt"
    monitoring.write_text("prometheus_config { enabel: true }")
    for flags, message in (
            ([f"--batching_parameters_file={batching}"], "max_batch_size must be >= 1, got 0"),
            ([f"--monitoring_config_file={monitoring}"],
             "--monitoring_config_file: error parsing text-format tensorflow.serving.MonitoringConfig"),
            (["--enable_model_warmup=maybe"], "expected true or false, got 'maybe'")):
        try:
            code = cli.main(["serve", "--model_name", "half", "--model_base_path", str(base), *flags])
        except SystemExit as e:   # argparse refuses a bad flag value itself
            code = e.code
        assert code != 0, flags
        assert message in capsys.readouterr().err, flags

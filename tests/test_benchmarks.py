"""The benchmark command's own pieces: reading wrk's output, its request scripts, the data set's shape."""

import pytest

from benchmarks import seed, stack, wrk

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8080/api/v1/health
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms    3.20ms  80.00ms   90.00%
    Req/Sec     2.60k   200.00     3.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%   13.00ms
     90%   15.00ms
     99%    1.03s
  10443 requests in 2.00s, 1.90MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   5221.50
Transfer/sec:    970.00KB
"""


def test_wrk_output_is_read_with_its_units():
    result = wrk.parse_wrk_output(WRK_OUTPUT)

    assert result.requests_per_second == 5221.5
    assert result.p50_ms == 0.85
    assert result.p99_ms == 1030.0
    assert result.requests == 10443
    assert result.non_2xx == 7
    assert result.socket_errors == 3


def test_a_clean_wrk_run_has_no_errors():
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if not line.lstrip().startswith(("Socket", "Non-2xx"))
    )

    result = wrk.parse_wrk_output(clean)

    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_request_bodies_take_turns_and_are_escaped_for_lua():
    script = wrk._lua_script("POST", ['a="1"', "b\\2"], {"Content-Type": "text/plain"})

    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "text/plain"' in script
    assert 'local bodies = {"a=\\"1\\"", "b\\\\2"}' in script
    assert "request = function()" in script


def test_the_data_set_puts_a_fifth_in_one_study_and_loses_no_sample():
    counts = seed.sample_counts(1_000_000, seed.STUDIES)

    assert sum(counts) == 1_000_000
    assert counts[0] == 200_000
    assert len(counts) == seed.STUDIES
    assert counts[1] > counts[-1] > 0


def test_only_measures_the_endpoints_named_in_the_order_of_the_table():
    options = stack.parse_args(["--only", "studies, health", "--no-sign-in", "--import-rows"])

    chosen = stack.selected_endpoints("big-id", options.only)

    assert [endpoint.key for endpoint in chosen] == ["health", "studies"]
    assert options.no_sign_in is True
    assert options.import_rows == []


def test_every_endpoint_is_measured_without_only():
    options = stack.parse_args([])

    assert [endpoint.key for endpoint in stack.selected_endpoints("big-id", options.only)] == list(
        stack.ENDPOINT_KEYS
    )


def test_an_unknown_endpoint_for_only_is_refused(capsys):
    with pytest.raises(SystemExit):
        stack.parse_args(["--only", "health,nonsense"])

    assert "nonsense" in capsys.readouterr().err

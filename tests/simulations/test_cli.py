"""`salon simulate`: run a file, check it, list the bundled ones, write a report again."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from domain.errors import Unavailable
from salon.cli import main
from salon.platform import Platform
from salon.simulate import home_lock
from simulations.cli import Services, simulate_group
from tests.installations import drop, fresh_settings
from tests.simulations.conftest import engine_for

BROKEN = """\
name = "broken"
[agents.ada]
script = ["hi"]
[rooms.hall]
agents = ["ada", "bob"]
"""


def test_check_names_each_problem_and_exits_with_the_invalid_status(
        services: Services, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    result = CliRunner().invoke(simulate_group(engine_for(services)), ["check", str(path)])
    assert result.exit_code == 2
    assert "broken.toml:5: rooms.hall.agents[1]: there is no agent 'bob'" in result.output
    result = CliRunner().invoke(simulate_group(engine_for(services)), [str(path)])
    assert result.exit_code == 2, "running a broken file must fail the same way"


def test_list_and_check_describe_the_bundled_scenarios(services: Services) -> None:
    group = simulate_group(engine_for(services))
    listed = CliRunner().invoke(group, ["list"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == \
        ["debate", "negotiation", "support", "village"]
    checked = CliRunner().invoke(group, ["check", "negotiation", "--set", "repetitions=3"])
    assert checked.exit_code == 0, checked.output
    assert "2 sweep point(s) × 3 repetition(s) = 6 run(s)" in checked.output


def test_simulate_file_runs_it_and_report_writes_the_report_again(
        services: Services, tmp_path: Path) -> None:
    group = simulate_group(engine_for(services))
    out = tmp_path / "out"
    result = CliRunner().invoke(group, ["support", "--seed", "4", "--out", str(out),
                                        "--quiet", "--set", "stop.max_seconds=600"])
    assert result.exit_code == 0, result.output
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    assert f"simulation {folder.name}: 1 of 1 runs finished" in result.output
    assert f"report: {folder / 'report.html'}" in result.output
    (folder / "report.html").unlink()
    again = CliRunner().invoke(group, ["report", f"{folder.name}-1", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output.strip() == str(folder / "report.html")
    assert (folder / "report.html").stat().st_size > 10_000
    missing = CliRunner().invoke(group, ["report", "nope", "--out", str(out)])
    assert missing.exit_code == 3 and folder.name in missing.output


def test_the_salon_command_runs_a_simulation_and_writes_its_report_again(
        platform: Platform, tmp_path: Path) -> None:
    assert platform.running is not None
    server = platform.running.settings
    assert server.database_url is not None and server.redis_url is not None
    home = tmp_path / "home"
    fresh = fresh_settings(server, home)
    env = {"SALON_HOME": str(home), "SALON_DATABASE_URL": fresh.database_url,
           "SALON_REDIS_URL": server.redis_url, "SALON_NAMESPACE": fresh.namespace}
    try:
        listed = CliRunner().invoke(main, ["--help"])
        assert listed.exit_code == 0 and "simulate" in listed.output
        ran = CliRunner().invoke(main, ["simulate", "negotiation", "--repetitions", "1",
                                        "--set", "stop.max_turns=4", "--quiet"], env=env)
        assert ran.exit_code == 0, ran.output
        [folder] = (home / "simulations").iterdir()
        assert f"simulation {folder.name}: 2 of 2 runs finished" in ran.output
        assert "watch the rooms live: http://" in ran.output
        assert not (home / "run.json").exists(), "the simulation's Salon is stopped after it"
        (folder / "report.html").unlink()
        again = CliRunner().invoke(main, ["simulate", "report", f"{folder.name}-2"], env=env)
        assert again.exit_code == 0, again.output
        assert again.output.strip() == str(folder / "report.html")
        assert "data:image/png;base64," in (folder / "report.html").read_text()
        # A Salon running on the same home holds its lock: the simulation refuses to start.
        with home_lock(home):
            refused = CliRunner().invoke(main, ["simulate", "negotiation"], env=env)
        assert refused.exit_code == Unavailable.exit_status
        assert f"Salon is already running on {home}" in refused.output
    finally:
        drop(fresh, server.database_url)

"""CLI arguments and files are checked before anything is sent: a clear error, exit status 2."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from salon.cli import main


def test_knowledge_add_refuses_files_it_cannot_send(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text("x" * 1_000_001)
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    runner = CliRunner()
    too_big = runner.invoke(main, ["knowledge", "add", "notes", str(huge)])
    assert too_big.exit_code == 2 and "at most 1,000,000" in too_big.output
    not_text = runner.invoke(main, ["knowledge", "add", "notes", str(binary)])
    assert not_text.exit_code == 2 and "is not UTF-8 text" in not_text.output
    missing = runner.invoke(main, ["knowledge", "add", "notes", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_models_list_names_an_unknown_provider() -> None:
    result = CliRunner().invoke(main, ["models", "list", "--provider", "nobody"])
    assert result.exit_code == 2 and "no models are registered for provider 'nobody'" in \
        result.output
    listed = CliRunner().invoke(main, ["models", "list", "--provider", "openai"])
    assert listed.exit_code == 0 and "gpt-4o-mini" in listed.output


def test_agents_create_checks_its_provider_and_file_before_sending(tmp_path: Path) -> None:
    runner = CliRunner()
    no_model = runner.invoke(main, ["agents", "create", "ada", "--provider", "anthropic"])
    assert no_model.exit_code == 2 and "--provider anthropic needs --model" in no_model.output
    missing = runner.invoke(main, ["agents", "create", "--file", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    bad = runner.invoke(main, ["agents", "create", "--file", str(broken)])
    assert bad.exit_code == 2 and "is not valid TOML" in bad.output
    nameless = tmp_path / "nameless.toml"
    nameless.write_text('persona = "quiet"\n')
    unnamed = runner.invoke(main, ["agents", "create", "--file", str(nameless)])
    assert unnamed.exit_code == 2 and "name the agent" in unnamed.output
    redefine = runner.invoke(main, ["agents", "redefine", str(nameless)])
    assert redefine.exit_code == 2 and "has no name field" in redefine.output

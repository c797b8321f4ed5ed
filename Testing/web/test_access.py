"""Who may open the page, and the command's answers to bad input (no browser needed)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from support.cli import run_cli
from support.net import free_port

from SpineAssistLib.web.access import COOKIE, is_loopback, new_token, page_url, token_middleware


def test_only_loopback_addresses_count_as_this_machine():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.20", "::", "example.org", ""))
    assert page_url("127.0.0.1", 8080, None) == "http://127.0.0.1:8080/"
    assert page_url("::", 80, "a b") == "http://[::]:80/?token=a%20b"
    assert new_token() != new_token() and len(new_token()) >= 32


def test_the_token_opens_the_page_once_and_the_cookie_after(tmp_path):
    from aiohttp import ClientSession, CookieJar, web

    token = new_token()

    async def scenario() -> list[tuple[int, str | None]]:
        app = web.Application(middlewares=[token_middleware(token)])
        async def the_page(_request):
            return web.Response(text="the page")

        app.router.add_get("/", the_page)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}/"
        seen = []
        try:
            async with ClientSession() as anonymous:
                for url in (base, base + "?token=wrong", base + "?token=" + token[:-1]):
                    async with anonymous.get(url) as r:
                        seen.append((r.status, None))
            async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as reader:   # a browser keeps IP cookies
                async with reader.get(base + "?token=" + token) as r:
                    seen.append((r.status, r.cookies.get(COOKIE).value if r.cookies.get(COOKIE) else None))
                async with reader.get(base) as r:      # the cookie, no token in the URL
                    seen.append((r.status, await r.text()))
        finally:
            await runner.cleanup()
        return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [s for s, _ in seen[:3]] == [403, 403, 403]
    assert seen[3] == (200, token) and seen[4] == (200, "the page")


def test_another_address_needs_allow_remote(assessed):
    _, out, _ = assessed
    r = run_cli(*["view", str(out), "--host", "0.0.0.0"])
    assert r.returncode == 2 and "add --allow-remote" in r.stderr and "Traceback" not in r.stderr


def test_a_port_in_use_is_one_line_before_anything_loads(assessed):
    _, out, _ = assessed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run_cli(*["view", str(out), "--port", str(s.getsockname()[1])])
    assert r.returncode == 2 and "choose another --port" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("case", ["missing", "file", "findings-only", "out-inside-study", "out-for-an-out"])
def test_bad_paths_get_a_clear_message(case, tmp_path, assessed):
    _, out, _ = assessed
    study = tmp_path / "study"
    study.mkdir()
    args = {"missing": [str(tmp_path / "nowhere")],
            "file": [str(out / "findings.json")],
            "findings-only": [str(tmp_path / "half")],
            "out-inside-study": [str(study), "--out", str(study / "out")],
            "out-for-an-out": [str(out), "--out", str(tmp_path / "x")]}[case]
    if case == "findings-only":
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "findings.json").write_text("{}")
    r = run_cli(*["view", *args, "--port", str(free_port())])
    expected = {"missing": "is not a folder", "file": "is not a folder", "findings-only": "no scene.mrb",
                "out-inside-study": "inside the study folder", "out-for-an-out": "leave out --out"}[case]
    assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr
    assert not (study / "out").exists()

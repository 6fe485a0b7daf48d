"""The UI end to end: headless Chromium against ``lockgate serve`` on loopback.

Every page visited is screenshot and checked by axe-core (:func:`check_page`)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.ui.conftest import Served, check_page, sign_in

GOOD = "Hello {{ name }}!\nWe can help with {{ product }} and {{ topic }}."
BAD = "Hello {{ name }}!\nWe can help with {{ product }"


def test_sign_in_edit_compare_diff_and_sign_out(page: Any, served: Served, artifacts: Path) -> None:
    # a page without a session sends the browser to sign in, and back afterwards
    page.goto(served.url + "/ui/prompts?q=greet")
    assert "/ui/sign-in" in page.url
    assert page.get_by_role("heading", name="Sign in").is_visible()
    check_page(page, artifacts, "01-sign-in")
    page.get_by_label("API key").fill("lg-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That key is unknown")
    check_page(page, artifacts, "02-sign-in-refused")
    page.get_by_label("API key").fill(served.keys.writer)
    page.keyboard.press("Enter")  # the keyboard alone signs in
    page.wait_for_url(re.compile(r"/ui/prompts\?q=greet"))

    # the list: search, labels, the latest version's time and author
    row = page.locator("tbody tr", has_text="support/greeting")
    assert "production → v1" in row.inner_text()
    assert "v2" in row.inner_text() and "ben" in row.inner_text()
    assert page.get_by_role("row").count() == 2  # the header and one match
    check_page(page, artifacts, "03-prompts-search")
    page.get_by_label("Name contains").fill("")
    page.get_by_role("button", name="Search").click()
    assert page.get_by_role("link", name="summarise").is_visible()
    check_page(page, artifacts, "04-prompts")

    # create a prompt
    page.get_by_role("link", name="New prompt").click()
    page.get_by_label("Name", exact=True).fill("ui/made")
    page.get_by_label("Template", exact=True).fill("Dear {{ customer }},")
    page.get_by_label("Message", exact=True).fill("made in the UI")
    check_page(page, artifacts, "05-new-prompt")
    page.get_by_role("button", name="Save version").click()
    page.wait_for_url(re.compile(r"/ui/prompts/ui/made\?saved=1"))
    assert page.get_by_role("status").first.inner_text() == "Saved version 1."

    # a prompt's timeline: message, author, time, labels, content hash
    page.goto(served.url + "/ui/prompts/support/greeting")
    first = page.locator("#v1")
    assert "first greeting" in first.inner_text() and "ana" in first.inner_text()
    assert "production" in first.inner_text()
    v1 = served.registry.prompts.get("support/greeting@1")
    assert first.locator("code.hash").get_attribute("title") == v1.content_hash
    check_page(page, artifacts, "06-prompt-timeline")

    # the editor: a bad template is refused inline, at its line, and nothing is saved
    page.get_by_role("link", name="New version").click()
    page.get_by_label("Template", exact=True).fill(BAD)
    page.get_by_role("button", name="Save version").click()
    error = page.locator("#template-error")
    assert "line 2" in error.inner_text()
    assert page.get_by_label("Template", exact=True).get_attribute("aria-invalid") == "true"
    assert "{{ product }" in page.locator("pre.excerpt .bad").inner_text()
    assert page.get_by_label("Template", exact=True).input_value() == BAD  # the draft is kept
    check_page(page, artifacts, "07-editor-bad-template")
    assert len(served.registry.prompts.versions("support/greeting")) == 2

    # a good draft: check shows its variables; compare it with v1 before committing
    page.get_by_label("Template", exact=True).fill(GOOD)
    page.get_by_role("button", name="Check").click()
    variables = page.locator(".variables li")
    assert variables.all_inner_texts() == ["name", "product", "topic"]
    page.get_by_label("Compare the draft with").select_option("1")
    page.get_by_role("button", name="Compare").click()
    compare = page.get_by_role("region", name=re.compile("Template: version 1 and draft"))
    assert "We can help with {{ product }} and {{ topic }}." in compare.inner_text()
    assert "Hello {{ name }}." in compare.inner_text()
    check_page(page, artifacts, "08-editor-compare-draft")
    assert len(served.registry.prompts.versions("support/greeting")) == 2

    page.get_by_label("Message", exact=True).fill("mention the topic")
    page.get_by_role("button", name="Save version").click()
    page.wait_for_url(re.compile(r"/ui/prompts/support/greeting\?saved=3"))
    v3 = served.registry.prompts.get("support/greeting@3")
    assert v3.template == GOOD and v3.author == "writer" and v3.message == "mention the topic"
    assert v3.config == {"temperature": 0.3}  # the editor started from the latest version

    # diff any two versions, side by side: template, config and variables
    page.get_by_label("From").select_option("1")
    page.get_by_label("to").select_option("3")
    page.get_by_role("button", name="Show diff").click()
    page.wait_for_url(re.compile(r"/ui/prompt-diff/support/greeting\?a=1&b=3"))
    template = page.get_by_role("region", name=re.compile("^Template:"))
    cells = template.locator("tr.changed td.code").all_inner_texts()
    assert any("Hello {{ name }}." in c for c in cells)
    assert any("Hello {{ name }}!" in c for c in cells)
    config = page.get_by_role("region", name=re.compile("^Config:")).inner_text()
    assert "temperature: 0.2" in config and "temperature: 0.3" in config
    variables_diff = page.get_by_role("region", name=re.compile("^Variables:")).inner_text()
    assert "topic" in variables_diff
    check_page(page, artifacts, "09-diff")

    page.goto(served.url + "/ui/prompts/summarise")  # a chat prompt
    check_page(page, artifacts, "10-chat-prompt")

    # sign out: the session ends, and pages send the browser to sign in again
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in\?signed_out=1"))
    assert page.get_by_text("You are signed out.").is_visible()
    check_page(page, artifacts, "11-signed-out")
    page.goto(served.url + "/ui/prompts")
    assert "/ui/sign-in" in page.url


def test_a_form_post_without_the_csrf_token_is_refused(
    page: Any, served: Served, artifacts: Path
) -> None:
    sign_in(page, served, served.keys.writer)
    page.goto(served.url + "/ui/prompt-editor/summarise")
    page.evaluate("document.querySelector('form.editor input[name=csrf]').remove()")
    page.get_by_label("Message", exact=True).fill("no token")
    with page.expect_response(re.compile("/ui/prompt-editor/")) as answer:
        page.get_by_role("button", name="Save version").click()
    assert answer.value.status == 403
    assert "security token" in page.get_by_role("alert").inner_text()
    check_page(page, artifacts, "12-csrf-refused")
    # and with a token of another session (or a made-up one)
    page.goto(served.url + "/ui/prompt-editor/summarise")
    page.evaluate("document.querySelector('form.editor input[name=csrf]').value = 'x'.repeat(43)")
    with page.expect_response(re.compile("/ui/prompt-editor/")) as answer:
        page.get_by_role("button", name="Save version").click()
    assert answer.value.status == 403
    assert len(served.registry.prompts.versions("summarise")) == 1


def test_a_read_only_key_cannot_write(page: Any, served: Served, artifacts: Path) -> None:
    sign_in(page, served, served.keys.reader)
    assert page.get_by_text("read-only").first.is_visible()
    assert page.get_by_role("link", name="New prompt").count() == 0
    page.goto(served.url + "/ui/prompts/summarise")
    assert page.get_by_role("link", name="New version").count() == 0
    page.goto(served.url + "/ui/prompt-editor/summarise")
    assert "is read-only" in page.get_by_role("note").inner_text()
    check_page(page, artifacts, "13-editor-read-only")
    page.get_by_label("Message", exact=True).fill("a reader's version")
    with page.expect_response(re.compile("/ui/prompt-editor/")) as answer:
        page.get_by_role("button", name="Save version").click()
    assert answer.value.status == 403
    assert "lacks the registry:write scope" in page.get_by_role("alert").inner_text()
    check_page(page, artifacts, "14-read-only-refused")
    assert len(served.registry.prompts.versions("summarise")) == 1


def test_a_key_without_registry_read_cannot_sign_in(page: Any, served: Served) -> None:
    page.goto(served.url + "/ui/sign-in")
    page.get_by_label("API key").fill(served.keys.label_only)
    page.get_by_role("button", name="Sign in").click()
    assert "lacks the registry:read scope" in page.get_by_role("alert").inner_text()
    assert "/ui/sign-in" in page.url


def test_revoking_the_key_ends_the_session(page: Any, served: Served, artifacts: Path) -> None:
    key = served.registry.keys.create("short-lived", scopes=["registry:read"])
    sign_in(page, served, str(key.secret))
    served.registry.keys.revoke(key.id)
    deadline = time.monotonic() + 30  # the gateway trusts a looked-up key for 0.2 s here
    while "/ui/sign-in" not in page.url:
        assert time.monotonic() < deadline, "the session outlived its revoked key"
        time.sleep(0.25)
        page.goto(served.url + "/ui/prompts")
    assert "revoked" in page.get_by_role("status").inner_text()
    check_page(page, artifacts, "15-key-revoked")


def test_templates_and_messages_are_shown_as_text(
    page: Any, served: Served, artifacts: Path
) -> None:
    """A prompt's content is data: markup in it is escaped, never run."""
    hostile = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    served.registry.prompts.push("hostile", hostile + " {{ x }}", message=hostile,
                                 author=hostile)  # fmt: skip
    served.registry.prompts.push("hostile", hostile + " {{ y }}", message=hostile)
    sign_in(page, served, served.keys.reader)
    for path in ("/ui/prompts?q=hostile", "/ui/prompts/hostile", "/ui/prompt-diff/hostile?a=1&b=2"):
        page.goto(served.url + path)
        assert page.evaluate("() => window.pwned === undefined"), path
        assert page.locator("main script, main img").count() == 0, path
    assert hostile in page.locator("main").inner_text()
    check_page(page, artifacts, "16-diff-escaped")


def test_the_accessibility_check_can_fail(page: Any, artifacts: Path) -> None:
    """axe-core runs for real: an unlabelled input and low contrast are caught."""
    page.set_content(
        '<html lang="en"><title>t</title><main><input type="text">'
        '<p style="color:#ccc;background:#fff">faint</p></main></html>'
    )
    try:
        check_page(page, artifacts, "00-axe-self-check")
    except AssertionError as exc:
        assert "label" in str(exc) and "color-contrast" in str(exc)
    else:
        raise AssertionError("axe-core found nothing on a page with an unlabelled input")

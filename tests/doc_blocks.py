"""Reading the docs' fenced blocks and the shell commands in them (for tests/test_doc_*.py).

A block is the text between two fences with its language, page and line, the
``<!-- not-tested: REASON -->`` just before it if any, and the ``examples/…`` file linked on
the line of prose before it if any. Shell lines are read as bash reads them, closely enough
for docs: ``\\`` continuations, quotes that go on across lines, comments that start a word,
operators, redirections and their targets, heredoc bodies skipped, ``NAME=value`` prefixes
and wrappers (``sudo``, ``env``, …) cut.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHELL = frozenset({"sh", "bash", "shell", "console", "crontab"})
SYNOPSIS = frozenset({"", "text"})
OPT_OUT = re.compile(r"<!--\s*not-tested:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```([\w+-]*)\s*$")
OPERATORS = frozenset({"&", "&&", "|", "||", ";", "(", ")", ";;", "|&"})
REDIRECTS = frozenset({">", ">>", "<", ">&", "<&", "&>", ">|"})
WRAPPERS = frozenset({"sudo", "exec", "nohup", "time", "env", "command"})
ENV_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)


# --- the blocks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the opening fence, 1-based
    lang: str
    text: str
    opt_out: str | None  # the reason of a <!-- not-tested: … --> just before it
    link: str | None  # examples/… linked on the last line of prose before it

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in DOCS.glob("*.md") if p.name != "cli.md")]


@cache
def blocks(page: Path) -> tuple[Block, ...]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = len(match.group(1)), match.group(2)
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith("```"):
            end += 1
        body = "\n".join(line[indent:] for line in lines[i + 1 : end])
        before = [line for line in lines[max(0, i - 3) : i] if line.strip()]
        reason = OPT_OUT.search(before[-1]) if before else None
        link = re.search(r"\]\((examples/[^)\s#]+)\)", before[-1]) if before else None
        found.append(Block(
            page, i + 1, lang, body + "\n", reason.group(1) if reason else None,
            link.group(1) if link else None,
        ))  # fmt: skip
        i = end + 1
    return tuple(found)


# --- shell lines and simple commands ------------------------------------------------------


def command_lines(block: Block) -> list[tuple[int, str]]:
    """(line number, command line) with continuations joined: for ``console`` only the lines
    after ``$ ``; for ``crontab`` the command after the time fields; a heredoc's body is
    skipped."""
    out: list[tuple[int, str]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        i += 1
        stripped = line.strip()
        if block.lang == "console" and not stripped.startswith("$ "):
            continue
        stripped = stripped.removeprefix("$ ")
        while i < len(lines) and (stripped.endswith("\\") or _open_quote(stripped)):
            joint = " " if stripped.endswith("\\") else "\n"
            stripped = stripped.removesuffix("\\") + joint + lines[i].strip()
            i += 1
        if block.lang == "crontab":
            fields = stripped.split(None, 5)
            stripped = fields[5] if len(fields) == 6 and not stripped.startswith("#") else ""
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", stripped)
        if heredoc:
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
        if stripped:
            out.append((block.line + 1 + start, stripped))
    return out


def _open_quote(line: str) -> bool:
    """Whether a quote is still open at the end of the line (it goes on on the next)."""
    try:
        shlex.split(_without_comment(line))
    except ValueError:
        return True
    return False


def _without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a word outside quotes (as bash reads it)."""
    quote = None
    for n, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (n == 0 or line[n - 1].isspace()):
            return line[:n]
    return line


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line, as words: split at operators, redirections
    and their targets (and an fd number before them) left out."""
    lexer = shlex.shlex(_without_comment(line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens = list(lexer)
    commands: list[list[str]] = [[]]
    skip = False
    for n, token in enumerate(tokens):
        if skip:
            skip = False
        elif token in OPERATORS:
            commands.append([])
        elif token in REDIRECTS:
            skip = True
        elif token.isdigit() and n + 1 < len(tokens) and tokens[n + 1] in REDIRECTS:
            continue
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


@dataclass
class Command:
    where: str
    words: list[str]  # the program and its arguments, environment prefixes and wrappers cut
    assigned: list[str]  # every NAME=value word of the command (prefixes, export, -e)


def commands(block: Block) -> Iterator[Command]:
    strict = block.lang in SHELL
    for lineno, line in command_lines(block) if strict else _synopsis_lines(block):
        try:
            simple = simple_commands(line)
        except ValueError as exc:  # an unclosed quote
            if strict:
                raise AssertionError(f"{block.page.name}:{lineno}: {exc}: {line}") from None
            continue
        for words in simple:
            assigned = [w for w in words if ENV_WORD.fullmatch(w)]
            while words and (ENV_WORD.fullmatch(words[0]) or words[0] in WRAPPERS):
                words = words[1:]
            if words:
                yield Command(f"{block.page.relative_to(ROOT)}:{lineno}", words, assigned)


def _synopsis_lines(block: Block) -> list[tuple[int, str]]:
    """Lines of an untagged block that start a known program (so prose and output are not
    read as commands)."""
    out = []
    for n, line in enumerate(block.text.splitlines()):
        if re.match(r"\s*(\$ )?(\S*/)?(lockgate|make|pip3?|python3?)\s", line):
            out.append((block.line + 1 + n, line.strip().removeprefix("$ ")))
        elif re.search(r"&&\s*lockgate\s", line):
            out.append((block.line + 1 + n, line.split("&&", 1)[1]))
    return out


def unbracket(words: list[str]) -> list[str]:
    """A synopsis's ``[--opt VALUE]`` as ``--opt VALUE``; ``…`` placeholders dropped."""
    out = []
    for word in words:
        word = word.lstrip("[").rstrip("]")
        if word and word not in ("…", "...", "|"):
            out.append(word)
    return out


def program(words: list[str]) -> str:
    return words[0].rsplit("/", 1)[-1]


def section(page: Path, start: str, stop: str | None = None) -> list[Block]:
    """The blocks between the heading ``start`` and the heading ``stop`` (or the end)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    first = lines.index(start) + 1
    last = lines.index(stop) + 1 if stop else len(lines) + 1
    return [b for b in blocks(page) if first < b.line < last]


def section_text(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


PACKAGES = ("registry", "evals", "finetune", "gateway")

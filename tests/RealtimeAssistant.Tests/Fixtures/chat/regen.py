#!/usr/bin/python3
"""Regenerates renderings.json: every template in cases.json rendered for every conversation of
its content kind, with add_generation_prompt false and true, by Jinja itself, set up the way
Hugging Face's apply_chat_template sets it up (transformers' utils/chat_template_utils.py):

- ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols
  extension and a {% generation %} tag that renders its body in place (HF's AssistantTracker
  only records where that text lands);
- tojson replaced by json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False);
- raise_exception(message) raises TemplateError; strftime_now(format) formats the clock, here
  pinned to cases.json's "clock" so the fixtures are stable;
- render(messages=..., tools=None, documents=None, add_generation_prompt=..., **special_tokens, **extra),
  special tokens that are None left out, as tokenizer.special_tokens_map does.

It also renders corpus-templates.json (166 real models' templates) for the conversations named in
cases.json's "corpus_conversations", into corpus-renderings.json.

A template that raises records the error instead of an output. Run with Debian's python3-jinja2:
    /usr/bin/python3 tests/RealtimeAssistant.Tests/Fixtures/chat/regen.py
"""
import json
import os
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


class GenerationTag(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment(clock):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: clock.strftime(fmt)
    return env


def render_all(env, templates, conversations):
    """[(name, template text, special tokens, content kind)] x conversations x add_generation_prompt."""
    renderings = []
    for name, text, special_tokens, content in templates:
        tokens = {k: v for k, v in special_tokens.items() if v is not None}
        try:
            template = env.from_string(text)
        except Exception as e:
            renderings.append({"template": name, "conversation": None, "add_generation_prompt": False, "error": f"{type(e).__name__}: {e}"})
            continue
        for conv in conversations:
            if content != "both" and content != conv["content"]:
                continue
            for agp in (False, True):
                kwargs = {"messages": conv["messages"], "tools": None, "documents": None, "add_generation_prompt": agp}
                kwargs.update(tokens)
                kwargs.update(conv.get("extra", {}))
                entry = {"template": name, "conversation": conv["name"], "add_generation_prompt": agp}
                try:
                    entry["output"] = template.render(**kwargs)
                except Exception as e:  # the template raised: our renderer must fail too
                    entry["error"] = f"{type(e).__name__}: {e}"
                renderings.append(entry)
    return renderings


def write(name, renderings):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "renderings": renderings}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in r for r in renderings)
    print(f"{name}: {len(renderings)} renderings ({errors} errors) with jinja2 {jinja2.__version__}")


def main():
    with open(os.path.join(HERE, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    env = environment(datetime.fromisoformat(cases["clock"]))
    templates = []
    for t in cases["templates"]:
        # newline="" keeps the file's own line endings: Jinja's lexer normalises them, not Python.
        with open(os.path.join(HERE, "templates", t["file"]), encoding="utf-8", newline="") as f:
            templates.append((t["name"], f.read(), t["special_tokens"], t["content"]))
    write("renderings.json", render_all(env, templates, cases["conversations"]))

    with open(os.path.join(HERE, "corpus-templates.json"), encoding="utf-8") as f:
        corpus = json.load(f)["templates"]
    conversations = [c for c in cases["conversations"] if c["name"] in cases["corpus_conversations"]]
    write("corpus-renderings.json", render_all(env, [(t["name"], t["template"], t["special_tokens"], "text") for t in corpus], conversations))


if __name__ == "__main__":
    main()

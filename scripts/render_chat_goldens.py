#!/usr/bin/env python3
"""Renders real chat templates with Python's jinja2 exactly as Hugging Face transformers does
(apply_chat_template), to produce the golden outputs that troupe's chat template interpreter
must match byte for byte.

For every template (llama.cpp's models/templates/*.jinja and the chat_template field of the
fetched tokenizer_config.json files) and every conversation of the corpus, it records the exact
context passed to render() and either the output or the error jinja2 raised. A template that
jinja2 cannot compile is recorded as a parse error.

Usage (Debian's python, which has jinja2 3.1):
  /usr/bin/python3 scripts/render_chat_goldens.py --data ~/.cache/troupe/testdata \
      --conversations tests/runtime/text/chat_template_conversations.json --out goldens.json
"""
import argparse
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


# ---- the environment of transformers.utils.chat_template_utils._compile_jinja_template

class AssistantTracker(jinja2.ext.Extension):
    # transformers' {% generation %} tag; with return_assistant_tokens_mask off it only renders.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces jinja2's tojson, which would HTML-escape the output.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def make_environment():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---- templates and conversations

def token_text(tok):
    if isinstance(tok, dict):
        return tok.get("content", "")
    return tok


def load_templates(data_dir):
    """(name, source, special tokens) for each template, sorted by name."""
    out = []
    tdir = os.path.join(data_dir, "templates")
    for fn in sorted(os.listdir(tdir)):
        if fn.endswith(".jinja"):
            with open(os.path.join(tdir, fn), encoding="utf-8") as f:
                out.append((fn, f.read(), {"bos_token": "<s>", "eos_token": "</s>"}))
    hf = os.path.join(data_dir, "hf")
    for model in sorted(os.listdir(hf)):
        path = os.path.join(hf, model, "tokenizer_config.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        tmpl = cfg.get("chat_template")
        if isinstance(tmpl, list):  # named templates: use the default one
            tmpl = next((t["template"] for t in tmpl if t.get("name") == "default"), tmpl[0]["template"])
        if not tmpl:
            continue
        tokens = {k: token_text(cfg.get(k)) or "" for k in ("bos_token", "eos_token")}
        out.append((f"hf-{model}-tokenizer_config.json", tmpl, tokens))
    return out


def context_for(conv, tokens):
    # What apply_chat_template passes: messages, tools (None when absent), documents,
    # add_generation_prompt, then the special tokens and the caller's extra keywords.
    ctx = {
        "messages": conv["messages"],
        "tools": conv.get("tools"),
        "documents": None,
        "add_generation_prompt": conv.get("add_generation_prompt", False),
    }
    ctx.update(tokens)
    ctx.update(conv.get("kwargs", {}))
    return ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="troupe's test data folder (templates/, hf/)")
    ap.add_argument("--conversations", required=True, help="the conversation corpus (JSON)")
    ap.add_argument("--out", required=True, help="where to write the goldens (JSON)")
    args = ap.parse_args()

    with open(args.conversations, encoding="utf-8") as f:
        conversations = json.load(f)["conversations"]
    env = make_environment()
    templates = []
    n_cases = 0
    for name, source, tokens in load_templates(args.data):
        entry = {"name": name, "source": source, "cases": []}
        try:
            compiled = env.from_string(source)
        except Exception as e:  # jinja2 rejects the template itself
            entry["parse_error"] = f"{type(e).__name__}: {e}"
            templates.append(entry)
            continue
        for conv in conversations:
            ctx = context_for(conv, tokens)
            case = {"conversation": conv["name"], "context": ctx}
            try:
                case["output"] = compiled.render(**ctx)
                case["ok"] = True
            except Exception as e:
                case["ok"] = False
                case["error"] = f"{type(e).__name__}: {e}"
            entry["cases"].append(case)
            n_cases += 1
        templates.append(entry)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"jinja2_version": jinja2.__version__, "templates": templates}, f, ensure_ascii=False, indent=1)
    print(f"render_chat_goldens: {len(templates)} templates, {n_cases} cases -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

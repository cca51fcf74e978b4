#!/usr/bin/env python3
"""Generates random Jinja templates from a seed and renders them with Python's jinja2 in
transformers' environment, for troupe's differential test of its chat template interpreter.

The templates mix the constructs chat templates use (loops and loop variables, namespace(),
macros and call blocks, filters, tests, string and dict methods, whitespace control) with
random values, so many of them raise: the test then expects an error too.

Usage (Debian's python, which has jinja2 3.1):
  /usr/bin/python3 scripts/random_chat_templates.py --seed 1 --count 2000 --out cases.json
"""
import argparse
import copy
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render_chat_goldens import make_environment  # noqa: E402

CONTEXT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  Héllo wörld! 你好 \n"},
        {"role": "assistant", "content": "", "reasoning_content": "hmm",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": {"a": 1, "b": [1, 2.5, None]}}}]},
        {"role": "tool", "content": "{\"x\": 1}", "tool_call_id": "c1"},
        {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "image"}]},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d <&> 'q'",
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}],
    "n": 3, "x": 2.5, "s": "a,b, c", "e": "", "z": 0, "t": True, "f": False, "nn": None,
    "l": [3, 1, 2], "d": {"k": "v", "n": 1, "items": "shadow", "Z": [1]}, "u": "ÉCOLE été ß ΟΔΟΣ",
    "add_generation_prompt": True, "bos_token": "<s>",
}
NAMES = list(CONTEXT)
OTHER_NAMES = ["undef", "loop", "ns", "i", "m", "k", "v", "mm", "caller"]  # often undefined
STRINGS = ["'a'", "'Hello World'", "' pad '", "'x,y'", "'é'", "''", "\"q'uote\"", "'\\n'", "'<b>'",
           "'{}-{}'", "'%s|%d'", "'abc'", "'{0:>4}|{1!r}'", "'%(k)s'", "'A b C'"]
NUMBERS = ["0", "1", "2", "-1", "1.5", "0.1", "10", "1e3", "3", "7", "2.0"]
FILTERS = [
    ("trim", []), ("trim", ["'x'"]), ("upper", []), ("lower", []), ("title", []), ("capitalize", []),
    ("length", []), ("count", []), ("string", []), ("list", []), ("first", []), ("last", []), ("reverse", []),
    ("sort", []), ("sort", ["reverse=true"]), ("sort", ["attribute='role'"]), ("unique", []),
    ("unique", ["attribute='role'"]), ("join", ["', '"]), ("join", []), ("join", ["'|'", "attribute='role'"]),
    ("default", ["'D'"]), ("default", ["'D'", "true"]), ("d", ["none"]), ("tojson", []), ("tojson", ["indent=2"]),
    ("tojson", ["sort_keys=true"]), ("tojson", ["ensure_ascii=true"]), ("tojson", ["separators=(',', ':')"]),
    ("int", []), ("int", ["-1"]), ("float", []), ("abs", []), ("round", []), ("round", ["1", "'floor'"]),
    ("items", []), ("dictsort", []), ("dictsort", ["by='value'"]), ("map", ["attribute='role'"]),
    ("map", ["attribute='content'", "default='?'"]), ("map", ["'upper'"]), ("map", ["'trim'"]),
    ("select", ["'odd'"]), ("select", []), ("reject", ["'none'"]), ("reject", ["'string'"]),
    ("selectattr", ["'role'", "'eq'", "'user'"]), ("selectattr", ["'tool_calls'", "'defined'"]),
    ("rejectattr", ["'content'"]), ("rejectattr", ["'role'", "'in'", "['user', 'tool']"]),
    ("replace", ["'a'", "'b'"]), ("replace", ["'l'", "''", "1"]), ("indent", ["2"]), ("indent", ["4", "true"]),
    ("indent", ["'> '", "blank=true"]), ("wordcount", []), ("center", ["9"]), ("safe", []), ("escape", []),
    ("max", []), ("min", []), ("sum", []), ("batch", ["2"]), ("truncate", ["5"]), ("truncate", ["6", "true"]),
    ("format", ["1"]), ("format", ["'z'", "2"]), ("e", []), ("attr", ["'role'"]), ("string", []),
]
TESTS = ["defined", "undefined", "none", "string", "number", "mapping", "iterable", "sequence", "integer",
         "float", "boolean", "true", "false", "odd", "even", "divisibleby 2", "eq 1", "in [1, 2]", "lower",
         "upper", "callable", "equalto 'user'", "ne 0", "gt 1", "sameas none", "escaped", "filter", "test"]
METHODS = [
    ("strip", []), ("strip", ["' '"]), ("split", []), ("split", ["','"]), ("split", ["',', 1"]),
    ("rsplit", ["' '", "1"]), ("startswith", ["'a'"]), ("startswith", ["('a', 'H')"]), ("endswith", ["'c'"]),
    ("upper", []), ("lower", []), ("replace", ["'a'", "'X'"]), ("find", ["'b'"]), ("rfind", ["'a'"]),
    ("count", ["'a'"]), ("get", ["'role'"]), ("get", ["'zz'", "'dflt'"]), ("items", []), ("keys", []),
    ("values", []), ("format", ["1", "'two'"]), ("format", ["k='kw'"]), ("title", []), ("lstrip", []),
    ("rstrip", ["'c'"]), ("splitlines", []), ("join", ["['p', 'q']"]), ("append", ["1"]), ("pop", []),
    ("index", ["1"]), ("isdigit", []), ("capitalize", []), ("isalpha", []), ("zfill", ["5"]), ("ljust", ["6", "'*'"]),
    ("partition", ["','"]), ("removeprefix", ["'a'"]), ("copy", []),
]
ATTRS = ["role", "content", "tool_calls", "k", "n", "items", "function", "arguments", "a", "0", "index", "first",
         "length", "last", "name", "text", "type"]


class generator:
    def __init__(self, rnd):
        self.r = rnd

    def atom(self, d):
        r = self.r.random()
        if r < 0.2:
            return self.r.choice(STRINGS)
        if r < 0.32:
            return self.r.choice(NUMBERS)
        if r < 0.36:
            return self.r.choice(["true", "false", "none", "True", "None"])
        if r < 0.65:
            return self.r.choice(NAMES)
        if r < 0.7:
            return self.r.choice(OTHER_NAMES)
        if r < 0.78:
            return "[" + ", ".join(self.expr(d + 1) for _ in range(self.r.randint(0, 3))) + "]"
        if r < 0.84:
            return "{" + ", ".join(self.r.choice(STRINGS) + ": " + self.expr(d + 1)
                                   for _ in range(self.r.randint(0, 2))) + "}"
        if r < 0.88:
            return "(" + self.expr(d + 1) + ", " + self.expr(d + 1) + ")"
        if r < 0.93:
            return "range(" + self.r.choice(["3", "1, 4", "5, 0, -2", "n", "0"]) + ")"
        if r < 0.96:
            return "namespace(a=" + self.expr(d + 1) + ")"
        return "dict(a=" + self.expr(d + 1) + ")"

    def postfix(self, e, d):
        r = self.r.random()
        if r < 0.2:
            return e + "." + self.r.choice(ATTRS)
        if r < 0.32:
            return e + "[" + self.r.choice(["0", "-1", "'role'", "'content'", "1:", "::-1", ":2", "'k'", "5",
                                            "n", "i"]) + "]"
        if r < 0.45:
            name, args = self.r.choice(METHODS)
            return e + "." + name + "(" + ", ".join(args) + ")"
        return e

    def unary(self, d):
        e = self.atom(d)
        if d < 3:
            for _ in range(self.r.randint(0, 2)):
                e = self.postfix(e, d)
        while self.r.random() < 0.3:
            name, args = self.r.choice(FILTERS)
            e = e + "|" + name + ("(" + ", ".join(args) + ")" if args else "")
        if self.r.random() < 0.12:
            e = e + " is " + self.r.choice(["", "not "]) + self.r.choice(TESTS)
        if self.r.random() < 0.04:
            e = "-" + e
        return e

    def expr(self, d=0, cond=True):
        if d > 3:
            return self.atom(d)
        r = self.r.random()
        if not cond and r >= 0.88:
            r = self.r.random() * 0.88
        if r < 0.5:
            return self.unary(d)
        if r < 0.62:
            op = self.r.choice(["+", "-", "*", "/", "//", "%", "~", "**", "~", "+"])
            return self.unary(d) + " " + op + " " + self.unary(d)
        if r < 0.75:
            op = self.r.choice(["==", "!=", "<", ">", "<=", ">=", "in", "not in"])
            return self.unary(d) + " " + op + " " + self.unary(d)
        if r < 0.83:
            return self.unary(d) + " " + self.r.choice(["and", "or"]) + " " + self.unary(d)
        if r < 0.88:
            return "not " + self.unary(d)
        if r < 0.94:
            return self.unary(d) + " if " + self.unary(d) + " else " + self.unary(d)
        return "(" + self.expr(d + 1) + ")"

    def pad(self):
        return self.r.choice(["", "", " ", "\n", "  \n  ", "\n\n", "\t", "\n    "])

    def tag(self, inner):
        left = self.r.choice(["", "", "-", "+"])
        right = self.r.choice(["", "", "-", "+"])
        return self.pad() + "{%" + left + " " + inner + " " + right + "%}" + self.pad()

    def out(self, e):
        left = self.r.choice(["", "", "-"])
        right = self.r.choice(["", "", "-"])
        return self.pad() + "{{" + left + " " + e + " " + right + "}}" + self.r.choice(["", "x", "|", " y "])

    def block(self, d, in_loop):
        return "".join(self.stmt(d, in_loop) for _ in range(self.r.randint(1, 4)))

    def stmt(self, d, in_loop):
        r = self.r.random()
        if d > 2 or r < 0.3:
            return self.out(self.expr())
        if r < 0.42:
            s = self.tag("if " + self.expr(cond=False)) + self.block(d + 1, in_loop)
            if self.r.random() < 0.4:
                s += self.tag("elif " + self.expr(cond=False)) + self.block(d + 1, in_loop)
            if self.r.random() < 0.4:
                s += self.tag("else") + self.block(d + 1, in_loop)
            return s + self.tag("endif")
        if r < 0.56:
            target = self.r.choice(["i", "m", "k, v", "i"])
            it = self.r.choice(["messages", "l", "d.items()", "d", "s", "range(3)", "tools", self.expr(cond=False),
                                "messages|selectattr('role', 'eq', 'user')", "messages[1:]", "l|sort"])
            cond = " if " + self.expr() if self.r.random() < 0.2 else ""
            s = self.tag("for " + target + " in " + it + cond) + self.block(d + 1, True)
            if self.r.random() < 0.2:
                s += self.tag("else") + self.block(d + 1, in_loop)
            return s + self.tag("endfor")
        if r < 0.64:
            return self.tag("set " + self.r.choice(["n", "s", "k", "x", "ns", "a, b"]) + " = " + self.expr())
        if r < 0.7:
            return (self.tag("set ns = namespace(c=0, s='', items=[])") + self.tag("set ns.c = " + self.expr()) +
                    self.out("ns.c") + self.out("ns"))
        if r < 0.76:
            return (self.tag("macro mm(a, b='B')") + self.block(d + 1, False) + "{{ a }}{{ b }}" +
                    self.r.choice(["", "{{ varargs }}", "{{ kwargs }}"]) + self.tag("endmacro") +
                    self.out("mm(" + self.expr() + self.r.choice(["", ", 2", ", b=3", ", 1, 2", ", c=1"]) + ")"))
        if r < 0.79:
            return (self.tag("macro wrap(t)") + "[{{ t }}:{{ caller() }}]" + self.tag("endmacro") +
                    self.tag("call wrap(" + self.expr() + ")") + self.block(d + 1, False) + self.tag("endcall"))
        if r < 0.82:
            return self.tag("set blk") + self.block(d + 1, in_loop) + self.tag("endset") + self.out("blk|trim")
        if r < 0.85:
            name, args = self.r.choice([("upper", []), ("trim", []), ("replace", ["'a'", "'b'"]), ("indent", ["2"])])
            return (self.tag("filter " + name + ("(" + ", ".join(args) + ")" if args else "")) +
                    self.block(d + 1, in_loop) + self.tag("endfilter"))
        if r < 0.88:
            return self.r.choice(["{# c #}", "{#- c -#}", "  {# c #}\n", "{% raw %}{{ x }}{% endraw %}"]) + self.pad()
        if r < 0.93 and in_loop:
            return self.tag(self.r.choice(["break", "continue"]))
        if r < 0.97:
            return self.out(self.r.choice([
                "loop.index if loop is defined else ''", "loop.previtem if loop is defined else ''",
                "loop.cycle('a', 'b') if loop is defined else ''", "loop.length if loop is defined else ''",
                "loop.changed(i) if loop is defined else ''", "loop.last if loop is defined else ''"]))
        return self.tag("with w = " + self.expr()) + self.out("w") + self.tag("endwith")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    env = make_environment()
    gen = generator(random.Random(args.seed))
    cases = []
    for _ in range(args.count):
        src = gen.block(0, False)
        case = {"source": src}
        try:
            tmpl = env.from_string(src)
        except Exception as e:
            case["parse_error"] = f"{type(e).__name__}: {e}"
            cases.append(case)
            continue
        try:
            case["output"] = tmpl.render(**copy.deepcopy(CONTEXT))
            case["ok"] = True
        except Exception as e:
            case["ok"] = False
            case["error"] = f"{type(e).__name__}: {e}"
        cases.append(case)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"context": CONTEXT, "cases": cases}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")  # jinja2 compiles some random constant expressions with SyntaxWarnings
    main()

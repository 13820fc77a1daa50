#!/usr/bin/python3
"""Renders chat cases with the real Jinja template of tokenizer_config.json.

Usage: /usr/bin/python3 render_chat.py TOKENIZER_CONFIG CASES_JSONL OUT_JSONL

Each case is {"messages": [...], "tools": [...]?, "add_generation_prompt": bool,
"enable_thinking": bool?}; each output line is the JSON string rendered. The
environment is set up the way Hugging Face transformers' apply_chat_template
sets it up (sandboxed, trim_blocks, lstrip_blocks, loopcontrols, its `tojson`),
so these are the renderings a transformers user gets.
"""
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def main():
    config_path, cases_path, out_path = sys.argv[1:4]
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(config["chat_template"])
    specials = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if config.get(k)}
    out = []
    with open(cases_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            case = json.loads(line)
            kwargs = dict(specials)
            if "enable_thinking" in case:
                kwargs["enable_thinking"] = case["enable_thinking"]
            text = template.render(
                messages=case["messages"],
                tools=case.get("tools"),
                documents=None,
                add_generation_prompt=case.get("add_generation_prompt", False),
                **kwargs,
            )
            out.append(json.dumps(text, ensure_ascii=False))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

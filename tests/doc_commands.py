"""Commands written in the project's documents, as tests/test_docs.py (which checks them) and
tests/test_readme_commands.py (which runs the README's) read them."""

import re

FENCED = re.compile(r'^```(\w*)[^\n]*\n(.*?)^```', re.M | re.S)
INLINE = re.compile(r'`([^`]+)`')
ENV_ASSIGNMENT = r'(?:[A-Z_][A-Z0-9_]*=\S*\s+)*'
INLINE_COMMAND = re.compile(rf'^{ENV_ASSIGNMENT}(?:python|bash)\s')
# A command inside a shell line: from `python`/`bash` (after a line start, a space or a quote)
# up to what ends it there: a quote, `;`, `&`, `|`, a comment or the line's end.
SHELL_COMMAND = re.compile(rf'(?:^|(?<=[\s"\'(]))({ENV_ASSIGNMENT}(?:python|bash)\s[^"\'\n;&|#]*)', re.M)


def without_fences(text: str) -> str:
    return FENCED.sub('', text)


def commands_in(text: str) -> list[str]:
    """Shell commands of the ```bash blocks (continuation lines joined) and inline `python ...` spans."""
    found = []
    for language, body in FENCED.findall(text):
        if language in ('bash', 'sh', 'shell'):
            joined = re.sub(r'\\\n\s*', ' ', body)
            joined = re.sub(r'(?m)^\s*#.*$', '', joined)  # comment lines (example output, notes)
            found += [match.strip() for match in SHELL_COMMAND.findall(joined)]
    for span in INLINE.findall(without_fences(text)):
        span = ' '.join(span.split())
        if INLINE_COMMAND.match(span):
            found.append(span)
    return found

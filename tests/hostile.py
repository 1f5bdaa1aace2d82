"""Grammars that crashed, wedged or exhausted the server in process (issue 19), shared by the engine's and the
server's tests."""

#: Accepting "{" makes llama.cpp's parse stacks explode (9^4 ways to stand between the groups): it spun for minutes.
WEDGE = 'root::="{"a\na::=b{9}\nb::=c{9}\nc::=d{9}\nd::=e{9}\ne::="x"?'
PARENS = "root ::= " + "(" * 30000 + '"a"' + ")" * 30000  # 60 KB; llama.cpp's recursive parser: SIGSEGV
REPEATS = "root ::= " + '"ab"{0,999} ' * 5200  # 64 KB of repetitions: gigabytes of rules
FORGED = 'root ::= "a" |\n{"level": "error", "msg": "FORGED log line"}'  # llama.cpp echoed it to stderr

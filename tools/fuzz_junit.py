#!/usr/bin/python3
"""Turns tools/fuzz.sh's table (one line per target) into JUnit XML, so the
CI summary counts each fuzz target as a test case: "ok" passes, anything
else (a finding, a missing line) fails."""
import sys
import xml.etree.ElementTree as ET


def main(path):
    suite = ET.Element("testsuite", name="fuzz-run")
    seen = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 8 or not fields[0].startswith("fuzz_"):
                continue
            seen += 1
            case = ET.SubElement(suite, "testcase", classname="fuzz", name=fields[0])
            result = " ".join(fields[7:])
            if result != "ok":
                ET.SubElement(case, "failure", message=result)
    if seen == 0:
        case = ET.SubElement(suite, "testcase", classname="fuzz", name="fuzz_run")
        ET.SubElement(case, "failure", message=f"no target lines in {path}")
    ET.ElementTree(suite).write(sys.stdout.buffer, encoding="utf-8", xml_declaration=True)
    return 0 if seen else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

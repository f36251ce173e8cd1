"""The graded report: per area passed/total and a score, failures with their reason.

Fed by the hooks in ``system_tests/conftest.py``; written to the terminal and,
as ``summary.md``, ``grade.json`` and ``junit.xml``, to the results folder
(``--grade-results``, default ``results/grade/``).  A test module is one area;
skipped tests (for example those needing the Order Book's service login when it
was not given) count in no score and are listed with their reason.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

AREAS: dict[str, str] = {
    "test_framing": "Framing and errors",
    "test_login": "Login and roles",
    "test_matching": "Order book matching",
    "test_tif_amend": "Time in force and amend",
    "test_event_stream": "Event stream and snapshot",
    "test_market_data": "Market data",
    "test_admin": "Admin lifecycle",
    "test_execution": "Execution",
    "test_risk_limits": "Risk limits",
    "test_robustness": "Robustness",
    "test_restart": "Restart and durability",
    "test_suite_self": "Grader self-checks (not scored)",
}
UNSCORED = {"test_suite_self"}


@dataclass
class Result:
    nodeid: str
    module: str
    name: str
    outcome: str = "passed"  # passed | failed | error | skipped
    reason: str = ""
    details: str = ""
    duration_s: float = 0.0
    rule: str = ""

    @property
    def area(self) -> str:
        return AREAS.get(self.module, self.module)


@dataclass
class AreaScore:
    area: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    scored: bool = True

    @property
    def total(self) -> int:
        return self.passed + self.failed

    @property
    def score(self) -> float | None:
        return 100.0 * self.passed / self.total if self.total else None


@dataclass
class GradeReport:
    target: str = "(not started)"
    started: float = field(default_factory=time.time)
    results: dict[str, Result] = field(default_factory=dict)

    def record(
        self,
        nodeid: str,
        when: str,
        outcome: str,
        reason: str,
        details: str,
        duration_s: float,
        rule: str,
    ) -> None:
        path, _, name = nodeid.partition("::")
        module = Path(path).stem
        result = self.results.setdefault(nodeid, Result(nodeid, module, name, rule=rule))
        result.duration_s += duration_s
        if outcome == "skipped" and result.outcome == "passed":
            result.outcome, result.reason = "skipped", reason
        elif outcome == "failed" and result.outcome in ("passed", "skipped"):
            result.outcome = "failed" if when == "call" else "error"
            result.reason = reason if when == "call" else f"{when} error: {reason}"
            result.details = details

    def areas(self) -> list[AreaScore]:
        by_area: dict[str, AreaScore] = {}
        order = list(AREAS)
        for result in sorted(
            self.results.values(),
            key=lambda r: (order.index(r.module) if r.module in order else 99, r.nodeid),
        ):
            score = by_area.setdefault(
                result.area, AreaScore(result.area, scored=result.module not in UNSCORED)
            )
            if result.outcome == "passed":
                score.passed += 1
            elif result.outcome == "skipped":
                score.skipped += 1
            else:
                score.failed += 1
        return list(by_area.values())

    def overall(self) -> AreaScore:
        total = AreaScore("Overall")
        for area in self.areas():
            if area.scored:
                total.passed += area.passed
                total.failed += area.failed
                total.skipped += area.skipped
        return total

    def failures(self) -> list[Result]:
        return [r for r in self.results.values() if r.outcome in ("failed", "error")]

    def skips(self) -> list[Result]:
        return [r for r in self.results.values() if r.outcome == "skipped"]

    # ------------------------------------------------------------ rendering

    def table_lines(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "   n/a" if value is None else f"{value:5.1f}%"

        width = max([len(a.area) for a in self.areas()] + [20])
        lines = [f"{'Area':<{width}}  Passed  Total  Skipped   Score"]
        for area in [*self.areas(), self.overall()]:
            if area.area == "Overall":
                lines.append("-" * (width + 34))
            lines.append(
                f"{area.area:<{width}}  {area.passed:>6}  {area.total:>5}  {area.skipped:>7}  "
                f"{pct(area.score)}"
            )
        return lines

    def terminal_text(self, results_dir: Path | None) -> str:
        lines = ["Target: " + self.target, "", *self.table_lines()]
        failures = self.failures()
        if failures:
            lines += ["", f"Failed ({len(failures)}):"]
            lines += [f"  [{r.area}] {r.name}: {r.reason}" for r in failures]
        skips = self.skips()
        if skips:
            lines += ["", f"Skipped ({len(skips)}):"]
            lines += [f"  [{r.area}] {r.name}: {r.reason}" for r in skips]
        if results_dir is not None:
            lines += ["", f"Written: {results_dir}/summary.md, grade.json, junit.xml"]
        return "\n".join(lines)

    def markdown(self) -> str:
        overall = self.overall()
        score = "n/a" if overall.score is None else f"{overall.score:.1f}%"
        out = [
            "# Optivex grade",
            "",
            f"- Target: {self.target}",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}",
            f"- Overall: **{overall.passed}/{overall.total} passed ({score})**",
            "",
            "| Area | Passed | Total | Skipped | Score |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for area in [*self.areas(), overall]:
            value = "n/a" if area.score is None else f"{area.score:.1f}%"
            out.append(f"| {area.area} | {area.passed} | {area.total} | {area.skipped} | {value} |")
        failures = self.failures()
        out += ["", "## Failures", ""]
        if not failures:
            out.append("None.")
        for r in failures:
            out.append(f"- **[{r.area}] `{r.name}`**: {_md(r.reason)}")
            if r.rule:
                out.append(f"  - rule: {_md(r.rule)}")
        skips = self.skips()
        if skips:
            out += ["", "## Skipped", ""]
            out += [f"- [{r.area}] `{r.name}`: {_md(r.reason)}" for r in skips]
        return "\n".join(out) + "\n"

    def as_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "started": self.started,
            "areas": [{**asdict(a), "total": a.total, "score": a.score} for a in self.areas()],
            "overall": {
                **asdict(self.overall()),
                "total": self.overall().total,
                "score": self.overall().score,
            },
            "tests": [asdict(r) | {"area": r.area} for r in self.results.values()],
        }

    def junit(self) -> ET.ElementTree:
        root = ET.Element("testsuites", name="optivex-grade")
        suites: dict[str, ET.Element] = {}
        for r in self.results.values():
            suite = suites.get(r.area)
            if suite is None:
                suite = suites[r.area] = ET.SubElement(root, "testsuite", name=r.area)
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"system_tests.{r.module}",
                name=r.name,
                time=f"{r.duration_s:.3f}",
            )
            if r.outcome in ("failed", "error"):
                node = ET.SubElement(case, "failure" if r.outcome == "failed" else "error")
                node.set("message", r.reason)
                node.text = r.details
            elif r.outcome == "skipped":
                ET.SubElement(case, "skipped", message=r.reason)
        for area, suite in suites.items():
            score = next(a for a in self.areas() if a.area == area)
            suite.set("tests", str(score.total + score.skipped))
            suite.set("failures", str(score.failed))
            suite.set("skipped", str(score.skipped))
        return ET.ElementTree(root)

    def write(self, results_dir: Path) -> None:
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / "summary.md").write_text(self.markdown(), encoding="utf-8")
        (results_dir / "grade.json").write_text(
            json.dumps(self.as_json(), indent=2), encoding="utf-8"
        )
        tree = self.junit()
        ET.indent(tree)
        tree.write(results_dir / "junit.xml", encoding="utf-8", xml_declaration=True)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

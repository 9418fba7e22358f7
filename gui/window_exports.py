"""The exports of the window (:class:`ExportsMixin`, a base of :class:`~gui.app.MainWindow`):
the hypnogram as shown (CSV/TSV/EDF+), a picture of it, a report of the night (PDF/PNG), from
the export buttons (a file dialog) or :meth:`ExportsMixin.export`."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from . import export


class ExportsMixin:
    """Export methods of the main window (uses its store, session, model, spec, controls)."""

    # ------------------------------------------------------------------ exports
    def _export_dialog(self, kind: str) -> None:
        filters = {"hypnogram": "CSV (*.csv);;TSV (*.tsv);;EDF+ (*.edf)",
                   "png": "PNG (*.png)", "report": "PDF (*.pdf);;PNG (*.png)"}
        names = {"hypnogram": "hypnogram.csv", "png": "hypnogram.png", "report": "report.pdf"}
        folder = (self.session.out_dir if self.session and self.session.out_dir else
                  self.reviewer.night.folder if self.reviewer.night is not None else Path.cwd())
        start = str(folder / names[kind])
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, f"export {kind}", start,
                                                        filters[kind])
        if not path:
            return
        try:
            written = self.export(kind, path)
        except (ValueError, OSError) as exc:
            self.controls.show_message(f"export failed: {exc}", error=True)
        else:
            self.controls.show_message(f"wrote {written}")

    def export(self, kind: str, path: str | Path) -> Path:
        """Export ``hypnogram`` (CSV/TSV/EDF+), ``png`` (hypnogram picture) or ``report``
        (PDF/PNG) of the night as shown."""
        hyp = self.store.hypnogram()
        final = self.store.final_mask()
        if kind == "hypnogram":
            return export.export_hypnogram(hyp, path)
        if kind == "png":
            return export.save_hypnogram_png(hyp, path, final=final, title=self._title())
        if kind == "report":
            return export.write_report(path, hyp, self.report_info(), final=final)
        raise ValueError(f"unknown export {kind!r}; use hypnogram, png or report")

    def _title(self) -> str:
        if self.session is not None:
            return self.session.describe()
        night = self.reviewer.night
        return f"review of {night.folder}" if night is not None else "edge-scorer"

    def report_info(self) -> dict[str, str]:
        """The run's details for the report."""
        s = self.store
        info = {"source": self._title(), "epochs": f"{s.n_epochs} ({s.n_final_prefix()} final)",
                "spec": f"{self.spec.name} ({self.spec.hash})"}
        if self.model is not None:
            info["model"] = str(getattr(self.model.intra, "path", "")) or "shipped default"
            info["backend"] = self.model.intra.name
        lat = self.session.latency_summary() if self.session is not None else {}
        if lat:
            info["latency"] = (f"median {lat['median_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
                               "(chunk in -> provisional label)")
        return info


__all__ = ["ExportsMixin"]

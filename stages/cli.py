"""The `pcas` command: every stage of the DVC pipeline, one sub-command each."""

import typer

from . import (align, check_data, demo_data, evaluate, fbank, figures, predict, pseudo_masks,
               report, train_audio, train_visual)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PCAS: weakly supervised audio-visual semantic segmentation, stage by stage.")
app.add_typer(demo_data.app, name="demo-data", help="Compose the bundled demo dataset.")
app.add_typer(fbank.app, name="fbank", help="AST fbank of every video into features/fbank.h5.")
app.add_typer(train_visual.app, name="train-visual", help="Visual ViT classifier; v_t, c_t per frame.")
app.add_typer(train_audio.app, name="train-audio", help="TVP audio encoder; a_t, s_t per frame.")
app.add_typer(align.app, name="align", help="CMC contrastive alignment; CAMs and sounding maps.")
app.add_typer(pseudo_masks.app, name="pseudo-masks", help="Pseudo-masks with dense CRF.")
app.add_typer(evaluate.app, name="evaluate", help="Segmentation head, test metrics, overlays.")
app.add_typer(figures.app, name="figures", help="Curves, per-class IoU and confusion as PNGs; "
              "plots/report.html with the headline and every picture (no network).")
app.command("check-data", help="Validate a dataset folder: counts and every problem (not a DVC "
            "stage).")(check_data.check_data)
app.add_typer(report.app, name="report", help="The headline table of the last run; or paper "
              "tables with their spread from `dvc exp show` (not a DVC stage).")
app.command(name="predict", help="Masks of the sounding objects in your own video (see "
            "docs/predict.md); or --root: another dataset's test split scored.")(predict.predict)

if __name__ == "__main__":
    app()

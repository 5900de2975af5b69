"""Reports rebuilt from the Parquet store alone: comparison tables, stability curves and the
stability leaderboard (CLOA Tables 3-4 and Figure 2, CLOP's stability plots).

Pure DataFrame -> DataFrame/Figure/str modules: `cells` (which rows, chance, scoring, selection
column, collapse rule), `stats` (t-intervals over seeds, Holm, selection on validation),
`tables` (paper-style comparison tables, comparisons.csv), `leaderboard` (one ranking per
dataset), `figures` (one module per figure, found by discovery; drawn with `curves` and
`style`), `columns` (what a report reads from the store), `build` (assembles a `Report`),
`markdown` and `html` (layout). `render` is the only module that writes files. Nothing here
imports torch or Ray (or scipy), so `bench report` starts fast on any machine.
"""

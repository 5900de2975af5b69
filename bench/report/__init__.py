"""Reports rebuilt from the Parquet store alone: comparison tables, stability curves and the
stability leaderboard (DESIGN "Reports"; CLOA Tables 3-4 and Figure 2, CLOP's stability plots).

Pure DataFrame -> DataFrame/Figure/str modules: `cells` (which rows, scoring), `stats`
(bootstrap over seeds), `tables` (paper-style comparison tables), `leaderboard`, `curves` and
`heatmaps` (figures, styled by `style`), `build` (assembles a `Report`), `markdown` and `html`
(layout). `render` is the only module that writes files. Nothing here imports torch or Ray, so
`bench report` starts fast on any machine.
"""

"""nnrun's Hydra plugins: a launcher that survives a crashed job and an Optuna sweeper.

Hydra finds plugins only inside the `hydra_plugins` namespace package, hence this home; the
configs that select them (`hydra/launcher=joblib`, `hydra/sweeper=optuna`, ...) live with
nnrun's own in `conf/hydra/`.
"""


def register() -> None:
    """Make nnrun's plugins and their configs known to Hydra, however nnrun is installed.

    Hydra finds plugins by walking the `hydra_plugins` package, which an editable install hides
    from it, so nnrun registers its own (the `nnrun` command calls this before Hydra starts).
    The configs are stored after Hydra's scan of the installed plugins, so that nnrun's
    `hydra/launcher=joblib` takes the place of Hydra's joblib launcher if that is installed.
    """
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from hydra_plugins.nnrun_plugins.optuna_sweeper import OptunaSweeper
    from hydra_plugins.nnrun_plugins.process_launcher import ProcessLauncher, ProcessLauncherConf

    plugins = Plugins.instance()  # the scan of installed plugins happens here, once
    plugins.register(ProcessLauncher)
    plugins.register(OptunaSweeper)
    ConfigStore.instance().store(group="hydra/launcher", name="joblib", node=ProcessLauncherConf,
                                 provider="nnrun")

"""Per-episode recording in the published field layout and dtypes.

Both collection loops record the same way: the observation *before* each step, the action,
`terminals` (true on the episode's last step) and, from the step's info, the simulator state
the observation was taken in (`prev_qpos`, `prev_qvel`, and `prev_button_states` for envs with
buttons), which is what OGBench's singletask relabelling reads.
"""

from __future__ import annotations

import numpy as np

FIELD_DTYPES = {
    "observations": np.float32,
    "actions": np.float32,
    "terminals": bool,
    "qpos": np.float32,
    "qvel": np.float32,
    "button_states": np.int64,
}


class EpisodeRecord:
    """Rows of one episode, turned into arrays with the published dtypes at the end."""

    def __init__(self, has_button_states: bool = False):
        self._has_button_states = has_button_states
        self._rows: dict[str, list] = {key: [] for key in ("observations", "actions", "terminals", "qpos", "qvel")}
        if has_button_states:
            self._rows["button_states"] = []

    def append(self, ob, action, done: bool, step_info: dict) -> None:
        self._rows["observations"].append(ob)
        self._rows["actions"].append(action)
        self._rows["terminals"].append(done)
        self._rows["qpos"].append(step_info["prev_qpos"])
        self._rows["qvel"].append(step_info["prev_qvel"])
        if self._has_button_states:
            self._rows["button_states"].append(step_info["prev_button_states"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: np.asarray(values, dtype=FIELD_DTYPES[key]) for key, values in self._rows.items()}

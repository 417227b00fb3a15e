"""verl reward-loop functions backed by a GRM (``reward_model.use_reward_loop=True``): point verl at this file.

From a running ``grm serve --model PATH --port 8000 --group-size N`` (N = ``actor_rollout_ref.rollout.n``)::

    custom_reward_function.path=examples/verl_grm_async.py custom_reward_function.name=compute_score

Or judged in verl's process, with verl's own GenRM servers generating behind its reward router
(``reward_model.enable=True``, ``reward_model.model.path=PATH_OF_THE_GRM``)::

    custom_reward_function.path=examples/verl_grm_async.py custom_reward_function.name=router_compute_score

Keep each prompt's question in ``extra_info["question"]``. Settings are environment variables; see
:mod:`grm.integrations.verl` (and docs/rl.md).
"""

from grm.integrations.verl import compute_score, router_compute_score

__all__ = ["compute_score", "router_compute_score"]

// `k6/execution`: the VU's ids and the scenario's iteration counter.
export default {
  get vu() {
    return { idInTest: globalThis.__VU, iterationInScenario: globalThis.__ITER };
  },
  get scenario() {
    return { name: globalThis.__SCENARIO, iterationInTest: globalThis.__SCENARIO_ITER_BASE + globalThis.__ITER };
  },
};

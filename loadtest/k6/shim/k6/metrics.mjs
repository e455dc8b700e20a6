// `k6/metrics`: Counter, Gauge, Rate, Trend.
import { add, metric } from "../runtime.mjs";

class Metric {
  constructor(name, type, isTime = false) {
    this.name = name;
    this.type = type;
    metric(name, type, isTime);
  }
  add(value, _tags) {
    add(this.name, this.type, value);
  }
}
export class Counter extends Metric {
  constructor(name) {
    super(name, "counter");
  }
}
export class Gauge extends Metric {
  constructor(name) {
    super(name, "gauge");
  }
}
export class Rate extends Metric {
  constructor(name) {
    super(name, "rate");
  }
}
export class Trend extends Metric {
  constructor(name, isTime = false) {
    super(name, "trend", isTime);
  }
}
export default { Counter, Gauge, Rate, Trend };

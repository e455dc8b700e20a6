// Loaded with `node --import` in every thread that runs a k6 script.
import { register } from "node:module";
register("./hooks.mjs", import.meta.url);

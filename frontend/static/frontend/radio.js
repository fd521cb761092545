// Radio page: a radio from the songs picked in the catalog, started at once.

import { readConfig } from "./common.js";
import { initQueuePlayer } from "./queue.js";

const config = readConfig("queue-config");
const queue = initQueuePlayer(config);
if (queue && config.seeds.length) queue.startRadio(config.seeds);

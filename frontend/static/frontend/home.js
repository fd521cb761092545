// Home page: uploads on top, the catalog below; a finished upload refreshes the catalog.

import { readConfig } from "./common.js";
import { initCatalog } from "./catalog.js";
import { initUploads } from "./upload.js";

const config = readConfig("resonance-config");
const catalog = initCatalog(config);
initUploads(config, { onSongChanged: () => catalog.refresh() });

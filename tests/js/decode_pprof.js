// Decodes a gzipped pprof profile with the published profile.proto (as the
// `pprof` package's generated protobufjs module) and prints it as JSON.
// Usage: node tests/js/decode_pprof.js FILE
"use strict";
const fs = require("fs");
const zlib = require("zlib");
const { perftools } = require("pprof/proto/profile.js");

const bytes = zlib.gunzipSync(fs.readFileSync(process.argv[2]));
const profile = perftools.profiles.Profile.decode(bytes);
const plain = perftools.profiles.Profile.toObject(profile, { longs: Number, defaults: true });
process.stdout.write(JSON.stringify(plain));

// Types of clip.mjs, the `clip-onnx` package: every export, written by hand (tests/test_registry_npm.py
// holds this file to the module's real exports, and type-checks a consumer against the installed package).
import type { InferenceSession } from "onnxruntime-node";

/** The kinds of error, as clip_onnx.errors.KINDS and the Rust crate's Error::kind name them. */
export type ErrorKind =
  | "not_an_export"
  | "bad_manifest"
  | "unsupported_format"
  | "missing_file"
  | "changed_file"
  | "unreadable_image"
  | "text_too_long"
  | "usage"
  | "invalid_input";

/** Every ErrorKind, in the order clip.mjs lists them. */
export const ERROR_KINDS: readonly ErrorKind[];

/** Bad input or environment: a one-line message naming the input and saying what to do, and its kind. */
export class ClipError extends Error {
  /** Throws a TypeError for a kind not in ERROR_KINDS. */
  constructor(message: string, kind?: ErrorKind);
  name: "ClipError";
  kind: ErrorKind;
}

/** The manifest format_versions this module reads. */
export const FORMAT_VERSIONS: readonly number[];
/** The default Hub endpoint of download() (after `endpoint` and HF_ENDPOINT). */
export const HUB_ENDPOINT: string;
/** The precisions a release may have, each a folder of it. */
export const PRECISIONS: readonly Precision[];
/** The preprocessing rules this module implements, by name, with the identifier of the way it does each. */
export const RULES: Readonly<Record<string, string>>;
/** The python-ftfy version whose fix_text clean() reproduces (a manifest's `tokenizer.ftfy`). */
export const FTFY_VERSION: string;

export type Precision = "fp32" | "fp16" | "int8";
/** A graph of an export: "visual", "transformer", "forward". */
export type GraphName = "visual" | "transformer" | "forward" | (string & {});

/** A file's size and SHA-256 (hex) as manifest.json records them. */
export interface FileFacts {
  bytes: number;
  sha256: string;
  [key: string]: unknown;
}

/** manifest.json of an exported folder: the keys this module reads (others are kept as they are). */
export interface Manifest {
  format_version: number;
  graphs: Record<string, { file: string; files: string[]; [key: string]: unknown }>;
  files: Record<string, FileFacts>;
  tokenizer: { file: string; ftfy?: string; [key: string]: unknown };
  preprocessing: { file: string; [key: string]: unknown };
  logit_scale: { exp: number; [key: string]: unknown };
  architecture: Record<string, unknown>;
  [key: string]: unknown;
}

/** preprocess.json, as checked by loadModel. */
export interface Preprocess {
  resolution: number;
  mean: [number, number, number];
  std: [number, number, number];
  rules: Record<string, string>;
  input: { formats: Record<string, Record<string, unknown>>; max_pixels: number; [key: string]: unknown };
  [key: string]: unknown;
}

/** The tokenizer read from tokenizer.json (an @huggingface/tokenizers Tokenizer; its own types do not resolve
 * under TypeScript's node16/nodenext module resolution, so only what clip.mjs uses is declared). */
export interface TextTokenizer {
  encode(text: string): { ids: number[] };
}

/** What loadModel returns: pass it to the functions below. tokenizer and preprocess are null until read. */
export interface Model {
  folder: string;
  manifest: Manifest;
  checkSha256: boolean;
  tokenizer: TextTokenizer | null;
  contextLength: number | null;
  padId: number | null;
  preprocess: Preprocess | null;
  /** The files already checked against manifest.json. */
  checked: Set<string>;
  /** Each graph's onnxruntime session, made on first use. */
  sessions: Map<string, Promise<InferenceSession>>;
}

export interface LoadOptions {
  /** false skips the size and SHA-256 checks, for files already checked (default true). */
  checkSha256?: boolean;
}

export interface TextOptions {
  /** Keep a long text's first tokens and the end token instead of refusing it (default false). */
  truncate?: boolean;
}

export interface DownloadOptions {
  /** The Hub repository, as "org/name". */
  repo: string;
  /** A commit or a tag: required, so the files are the ones released. */
  revision: string;
  /** The release's folder to fetch (default "fp32"). */
  precision?: Precision;
  /** Only the files these graphs need (default: every graph the manifest lists). */
  graphs?: GraphName[];
  /** The folder to write into: the files go to `target`/`precision`/. */
  target: string;
  /** The Hub's URL (default HF_ENDPOINT, then https://huggingface.co). */
  endpoint?: string;
  /** A bearer token (default HF_TOKEN). */
  token?: string | null;
}

/** A variant of a release table: its Hub repo and, by path in it ("fp32/manifest.json"), each file's size and SHA-256. */
export interface ReleaseVariant {
  hub_repo: string;
  files: Record<string, FileFacts>;
  [key: string]: unknown;
}

/** release.json, the release table a published package pins: the release's tag and every file of each variant. */
export interface Release {
  format_version: 1;
  tag: string;
  variants: Record<string, ReleaseVariant>;
  [key: string]: unknown;
}

export interface DownloadReleaseOptions {
  /** The variant, as "ViT-B-32": one of the table's `variants`. */
  name: string;
  /** The release's folder to fetch (default "fp32"); the table must pin its manifest.json. */
  precision?: Precision;
  /** Only the files these graphs need (default: every graph the manifest lists). */
  graphs?: GraphName[];
  /** The folder to write into: the files go to `target`/`precision`/. */
  target: string;
  /** The Hub's URL (default HF_ENDPOINT, then https://huggingface.co). */
  endpoint?: string;
  /** A bearer token (default HF_TOKEN). */
  token?: string | null;
  /** Another release table, checked as embeddedRelease checks its own (default, or null: the installed one). */
  release?: Release | null;
}

/** The files the given graphs need (manifest `graphs.<graph>.files`), each name once, in order. */
export function neededFiles(manifest: Manifest, graphs: GraphName[]): string[];
/** SHA-256 of a file, hex, read as a stream. */
export function sha256File(file: string): Promise<string>;
/** Each named file of `folder` has its manifest size and SHA-256; else rejects with a ClipError naming it. */
export function checkFiles(folder: string, manifest: Manifest, names: string[]): Promise<void>;
/** A release's `precision` folder from the Hub at a pinned revision, each file checked; resolves to the folder (absolute). */
export function download(options: DownloadOptions): Promise<string>;
/** The release table installed with the package (release.json), checked; null from a checkout, which pins none.
 * A malformed one throws a ClipError (bad_manifest, or unsupported_format for another format_version). */
export function embeddedRelease(): Release | null;
/** Variant `name` of the pinned release: download() of its hub_repo at its tag, every file (manifest.json first)
 * refused with kind changed_file unless it is the pinned one; no table, an unknown name or precision is kind usage. */
export function downloadRelease(options: DownloadReleaseOptions): Promise<string>;
/** An exported folder, whole or partial (some graphs' files only). */
export function loadModel(folder: string, options?: LoadOptions): Promise<Model>;
/** The onnxruntime session of one of the manifest's graphs, made once after its files are checked. */
export function graphSession(model: Model, graph: GraphName): Promise<InferenceSession>;
/** Python's html.unescape. */
export const htmlUnescape: (text: string) => string;
/** CLIP's text cleaning: html.unescape(html.unescape(ftfy.fix_text(text))). */
export const clean: (text: string) => string;
/** Token ids, int32 [texts.length, contextLength], zero padded. */
export function tokenize(model: Model, texts: string[], options?: TextOptions): Int32Array;
/** Pixels, float32 [files.length, 3, R, R], as the Python runtime's preprocessing gives them. */
export function pixels(model: Model, files: string[]): Promise<Float32Array>;
/** One embedding per image file, not normalised. */
export function encodeImage(model: Model, files: string[]): Promise<Float32Array[]>;
/** One embedding per text, not normalised. */
export function encodeText(model: Model, texts: string[], options?: TextOptions): Promise<Float32Array[]>;
/** Per image, exp(logit_scale) * cosine similarity with each text. */
export function logits(model: Model, imageEmbeds: Iterable<number>[], textEmbeds: Iterable<number>[]): number[][];
/** Per image, the softmax over the texts of its logits (each row sums to 1); no texts is a ClipError of kind usage. */
export function probabilities(model: Model, imageEmbeds: Iterable<number>[], textEmbeds: Iterable<number>[]): number[][];

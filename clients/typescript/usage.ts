// What a TypeScript caller writes against the types openapi-typescript generates from the API's
// document (scripts/check_clients.py generates them into generated/ and runs `tsc --noEmit` here).
// Each `@ts-expect-error` is a request the document refuses: it fails the check if the types accept it.
import type { components, operations, paths } from "./generated/studybase";

type Schemas = components["schemas"];
type FieldDefinition = Schemas["SampleFieldDefinition"];
type StudyCreate = Schemas["StudyCreate"];
type StudyRead = paths["/api/v1/studies"]["post"]["responses"][201]["content"]["application/json"];
type Problem = Schemas["Problem"];

// A study with one field of each type, each in its own shape.
export const study: StudyCreate = {
  code: "ONC-2026-01",
  title: "Tumour markers in blood",
  sample_fields: [
    { name: "label", type: "text", max_length: 20, pattern: "[A-Z]+" },
    { name: "count", type: "integer", min: 0, max: 10 },
    { name: "volume", type: "number", unit: "mL", min: 0 },
    { name: "fasting", type: "boolean" },
    { name: "collected_on", type: "date", required: true },
    { name: "frozen_at", type: "datetime" },
    { name: "tissue", type: "choice", required: true, choices: ["blood", "saliva"] },
  ],
};

// The `type` tells which constraints a field may have.
// @ts-expect-error a boolean field has no max_length
export const booleanWithALength: FieldDefinition = { name: "seen", type: "boolean", max_length: 5 };
// @ts-expect-error a choice field cannot do without its choices
export const choiceWithoutChoices: FieldDefinition = { name: "tissue", type: "choice" };
// @ts-expect-error a text field has no bounds
export const textWithBounds: FieldDefinition = { name: "label", type: "text", min: 1 };
// @ts-expect-error there is no such type
export const unknownType: FieldDefinition = { name: "seen", type: "time" };

// A field as answered narrows on its type, and the fields read can be sent back with one more.
export function describe(field: Schemas["SampleFieldRead"]): string {
  switch (field.type) {
    case "text":
      return `${field.name}: text of at most ${field.max_length ?? 1000} characters`;
    case "integer":
    case "number":
      return `${field.name}: from ${field.min ?? "any"} to ${field.max ?? "any"}`;
    case "choice":
      return `${field.name}: one of ${field.choices.join(", ")}`;
    default:
      return `${field.name}: a ${field.type}`;
  }
}

export function withOneMore(read: StudyRead, field: FieldDefinition): FieldDefinition[] {
  return [...read.sample_fields, field];
}

// Members join by invitation: an owner invites an address with a role, never a user id.
export const invitation: Schemas["InvitationCreate"] = { email: "grace@example.org", role: "editor" };
// @ts-expect-error no user_id
export const byId: Schemas["InvitationCreate"] = { user_id: "3f2b8c1e", email: "grace@example.org", role: "editor" };
// The invitee accepts with the mailed link's token.
export const accept: Schemas["InvitationTokenBody"] = { token: "Xq3v8kq0JmB2s1Yw7c5Zr4tH6nD9pL0aE2fG3hI4jK5" };

// An upload answers 200 with a dry run's report or, for content already imported, that file's record.
type UploadAnswer = operations["upload_sample_file"]["responses"][200]["content"]["application/json"];
export function importedFileId(answer: UploadAnswer): string | null {
  return "dry_run" in answer ? null : answer.id;
}

// A query parameter is left out, never null.
type StudiesQuery = NonNullable<operations["list_studies"]["parameters"]["query"]>;
export const activeStudies: StudiesQuery = { status: "active", q: "ONC", page_size: 50 };
// @ts-expect-error no null
export const nullStatus: StudiesQuery = { status: null };

// A typed call, its answer typed by the route's own schema, its error a problem.
export async function createStudy(baseUrl: string, token: string, body: StudyCreate): Promise<StudyRead> {
  const response = await fetch(`${baseUrl}/api/v1/studies`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 201) {
    const problem = (await response.json()) as Problem;
    throw new Error(`${problem.code}: ${problem.detail}`);
  }
  return (await response.json()) as StudyRead;
}

type Dashboard = operations["study_figures"]["responses"][200]["content"]["application/json"];
export function samplesPerStatus(dashboard: Dashboard): [string, number][] {
  return Object.entries(dashboard.samples.by_status);
}

// Self-registration answers the same 202 for any address, taken or not (nobody learns who is
// registered): no account to read, only where to go on (the mailbox and its link, then sign-in; where
// addresses must be verified, the link's POST /auth/verify-email is what makes the account, with the
// password sent there, since only the mailbox's owner may choose it; without one it is 422
// PASSWORD_REQUIRED and the link still works; it answers 204 with no body). Registering through an invitation's mailed link answers 201 with the
// account.
type Register = paths["/api/v1/auth/register"]["post"]["responses"];
type Registered = Register[202]["content"]["application/json"];
type RegisteredByInvitation = Register[201]["content"]["application/json"];
export function afterRegistering(answer: Registered): string {
  return answer.detail ?? "Check your mail and follow the link in it, then sign in.";
}
type VerifyEmail = paths["/api/v1/auth/verify-email"]["post"];
export const verifyEmailBody = (
  token: string,
  password?: string,
): VerifyEmail["requestBody"]["content"]["application/json"] => ({
  token,
  ...(password === undefined ? {} : { password }),
});
export type AccountReady = VerifyEmail["responses"][204];
// @ts-expect-error self-registration answers no account
export const registeredAccountId = (answer: Registered): string => answer.id;
export const invitedAccountId = (answer: RegisteredByInvitation): string => answer.id;

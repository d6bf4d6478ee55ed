/*
 * test_design_doc.c - DESIGN.md stays true to the code it describes.
 *
 * The names are taken from the sources at test time, not from a list
 * kept here (a list would go stale exactly as the document would):
 *   - every enumerator of enum rmp_wire_type in common/wire.h, cross-
 *     checked against the codec's own table (rmp_wire_type_name over all
 *     256 type bytes), so a parser that finds nothing cannot pass;
 *   - every macro that common/buddy.h and common/buddy.c define (the
 *     include guard aside) and every enumerator of the enums in
 *     common/buddy.c: the layout's bits, masks, header words and counts.
 * Each must appear in DESIGN.md as a whole word (ST_FREE is not found in
 * XST_FREE). Sections are cited by name, so no heading may be numbered.
 *
 * RMP_SOURCE_DIR comes from CMake (the tree's root).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "wire.h"

#ifndef RMP_SOURCE_DIR
#error "RMP_SOURCE_DIR must name the source tree (tests/unit/CMakeLists.txt sets it)"
#endif

#define MAX_NAMES 512
#define NAME_LEN 64

struct names {
	size_t n;
	char v[MAX_NAMES][NAME_LEN];
};

static char *slurp(const char *rel)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", RMP_SOURCE_DIR, rel);
	FILE *f = fopen(path, "rb");
	cr_assert(f, "cannot open %s", path);
	cr_assert(fseek(f, 0, SEEK_END) == 0);
	long len = ftell(f);
	cr_assert(len >= 0);
	rewind(f);
	char *buf = malloc((size_t)len + 1);
	cr_assert(buf);
	cr_assert(fread(buf, 1, (size_t)len, f) == (size_t)len, "short read of %s", path);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

/* C source with comments blanked out (newlines kept, so that a #define
 * still starts its line). String literals are left alone: none of the
 * parsed files holds a comment marker in one. */
static void strip_comments(char *s)
{
	for (char *p = s; *p; p++) {
		if (p[0] == '/' && p[1] == '*') {
			char *e = strstr(p + 2, "*/");
			char *end = e ? e + 2 : p + strlen(p);
			for (char *q = p; q < end; q++)
				if (*q != '\n')
					*q = ' ';
			p = end - 1;
		} else if (p[0] == '/' && p[1] == '/') {
			while (*p && *p != '\n')
				*p++ = ' ';
			p--;
		}
	}
}

static bool ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Copies the identifier at *p (skipping blanks first) into out; advances. */
static bool take_ident(const char **p, char out[NAME_LEN])
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	size_t n = 0;
	while (ident_char(s[n]) && n < NAME_LEN - 1)
		n++;
	if (n == 0 || isdigit((unsigned char)s[0]))
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = s + n;
	return true;
}

static void add_name(struct names *ns, const char *name)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], name) == 0)
			return;
	cr_assert(ns->n < MAX_NAMES, "more than %d names", MAX_NAMES);
	snprintf(ns->v[ns->n++], NAME_LEN, "%s", name);
}

static bool has_name(const struct names *ns, const char *name)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], name) == 0)
			return true;
	return false;
}

/* The enumerators of the enum body that starts at the '{' at open. */
static void enumerators(const char *open, struct names *out)
{
	const char *p = open + 1;
	const char *close = strchr(p, '}');
	cr_assert(close, "an enum without its closing brace");
	while (p < close) {
		char name[NAME_LEN];
		if (!take_ident(&p, name))
			break;
		add_name(out, name);
		/* skip "= value" up to the next comma at this level */
		while (p < close && *p != ',')
			p++;
		if (p < close)
			p++;
	}
}

/* Every enum in src with a body: "enum {" or "enum tag {". */
static void all_enums(const char *src, struct names *out)
{
	for (const char *p = strstr(src, "enum"); p; p = strstr(p + 4, "enum")) {
		if ((p > src && ident_char(p[-1])) || ident_char(p[4]))
			continue;
		const char *q = p + 4;
		char tag[NAME_LEN];
		take_ident(&q, tag); /* optional tag */
		while (*q == ' ' || *q == '\t' || *q == '\n')
			q++;
		if (*q == '{')
			enumerators(q, out);
	}
}

static void wire_types(const char *src, struct names *out)
{
	const char *p = strstr(src, "enum rmp_wire_type");
	cr_assert(p, "common/wire.h has no enum rmp_wire_type");
	const char *open = strchr(p, '{');
	cr_assert(open, "enum rmp_wire_type has no body");
	enumerators(open, out);
}

/* Macros defined in src, except the include guard (#ifndef X ... #define X). */
static void defines(const char *src, struct names *out)
{
	for (const char *p = src; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *s = p;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s != '#')
			continue;
		s++;
		while (*s == ' ' || *s == '\t')
			s++;
		if (strncmp(s, "define", 6) != 0 || ident_char(s[6]))
			continue;
		s += 6;
		char name[NAME_LEN], guard[NAME_LEN + 16];
		if (!take_ident(&s, name))
			continue;
		snprintf(guard, sizeof(guard), "#ifndef %s\n", name);
		if (strstr(src, guard))
			continue;
		add_name(out, name);
	}
}

/* Whether name appears in doc as a whole word. */
static bool doc_has(const char *doc, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = strstr(doc, name); p; p = strstr(p + 1, name))
		if ((p == doc || !ident_char(p[-1])) && !ident_char(p[n]))
			return true;
	return false;
}

/* The names of ns that doc lacks, as one line; how many. */
static size_t missing(const char *doc, const struct names *ns, char *line, size_t cap)
{
	size_t k = 0, used = 0;
	line[0] = '\0';
	for (size_t i = 0; i < ns->n; i++) {
		if (doc_has(doc, ns->v[i]))
			continue;
		k++;
		int w = snprintf(line + used, cap - used, "%s%s", used ? " " : "", ns->v[i]);
		if (w > 0 && (size_t)w < cap - used)
			used += (size_t)w;
	}
	return k;
}

Test(design_doc, every_wire_message_type_is_documented)
{
	char *doc = slurp("DESIGN.md");
	char *hdr = slurp("common/wire.h");
	static struct names types;
	char line[4096];

	strip_comments(hdr);
	wire_types(hdr, &types);
	/* The parse must agree with the codec's own table, both ways. */
	size_t in_table = 0;
	for (unsigned t = 0; t < 256; t++) {
		const char *n = rmp_wire_type_name(t);
		if (!n)
			continue;
		in_table++;
		char full[NAME_LEN];
		snprintf(full, sizeof(full), "RMP_MSG_%s", n);
		cr_assert(has_name(&types, full), "type 0x%02x (%s) is in the codec's table, not in the "
			  "enum parsed from common/wire.h", t, full);
	}
	cr_assert_eq(types.n, in_table, "parsed %zu enumerators from enum rmp_wire_type, the codec "
		     "knows %zu types", types.n, in_table);
	size_t k = missing(doc, &types, line, sizeof(line));
	cr_assert_eq(k, 0, "DESIGN.md does not name %zu message type(s) of common/wire.h: %s "
		     "(say what each carries, in \"Wire protocol\")", k, line);
	free(hdr);
	free(doc);
}

Test(design_doc, every_buddy_layout_name_is_documented)
{
	char *doc = slurp("DESIGN.md");
	char *h = slurp("common/buddy.h");
	char *c = slurp("common/buddy.c");
	static struct names layout;
	char line[4096];

	strip_comments(h);
	strip_comments(c);
	defines(h, &layout);
	defines(c, &layout);
	all_enums(h, &layout);
	all_enums(c, &layout);
	/* Anchors: a parser that misses these misses everything. */
	const char *anchors[] = { "ST_NONE", "ST_FREE", "ST_ALLOC", "ST_RESERVED", "PAIR_MASK",
				  "RMP_BUDDY_HDR_WORDS", "RMP_BUDDY_MAGIC" };
	for (size_t i = 0; i < sizeof(anchors) / sizeof(anchors[0]); i++)
		cr_assert(has_name(&layout, anchors[i]), "%s was not parsed out of common/buddy.[ch]",
			  anchors[i]);
	cr_assert(!has_name(&layout, "RMP_BUDDY_H"), "the include guard counts as a layout name");
	size_t k = missing(doc, &layout, line, sizeof(line));
	cr_assert_eq(k, 0, "DESIGN.md does not name %zu constant(s) of common/buddy.[ch]: %s (say "
		     "what each is, in \"The buddy engine\")", k, line);
	free(c);
	free(h);
	free(doc);
}

Test(design_doc, sections_are_named_not_numbered)
{
	char *doc = slurp("DESIGN.md");
	size_t lineno = 1;

	for (const char *p = doc; *p; lineno++) {
		const char *s = p;
		if (*s == '#') {
			while (*s == '#')
				s++;
			while (*s == ' ')
				s++;
			cr_assert(!isdigit((unsigned char)*s), "DESIGN.md:%zu: a numbered heading; cite and "
				  "name sections by their names", lineno);
		}
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	free(doc);
}

/* The checker itself: it must be able to say no. */
Test(design_doc, the_checker_finds_what_is_missing)
{
	static struct names ns;
	char line[256];
	const char *doc = "ST_FREE, XST_ALLOC and ST_NONEX; `RMP_MSG_ACK`.";

	add_name(&ns, "ST_FREE");
	add_name(&ns, "ST_ALLOC");
	add_name(&ns, "ST_NONE");
	add_name(&ns, "RMP_MSG_ACK");
	add_name(&ns, "RMP_MSG_NO_SUCH_TYPE");
	cr_assert_eq(missing(doc, &ns, line, sizeof(line)), 3, "missing: %s", line);
	cr_assert_str_eq(line, "ST_ALLOC ST_NONE RMP_MSG_NO_SUCH_TYPE");

	char src[] = "enum x { A_1 = 1, /* B_2, */ C_3 }; // enum { D }\n#define E 1\n#ifndef G_H\n#define G_H\n";
	static struct names parsed;
	strip_comments(src);
	all_enums(src, &parsed);
	defines(src, &parsed);
	cr_assert_eq(parsed.n, 3, "parsed %zu names", parsed.n);
	cr_assert(has_name(&parsed, "A_1") && has_name(&parsed, "C_3") && has_name(&parsed, "E"));
}

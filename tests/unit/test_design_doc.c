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
 * And the cites: every "X.md" that a file of the tree names (under
 * common, server, donor, client, tests, deploy, and the root's own files)
 * is a file of the tree, and "DESIGN.md, Name" names one of its "##" or
 * "###" headings (a quote before the name, and a comment line wrapped
 * inside it, are fine); "DESIGN.md 4" and "DESIGN.md section 4" are
 * refused.
 *
 * RMP_SOURCE_DIR comes from CMake (the tree's root).
 */
#include <ctype.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* ---- cites: every *.md a source names is in the tree; DESIGN.md is
 * cited by section name ---- */

#define MAX_FILES 4096

struct paths {
	size_t n;
	char *v[MAX_FILES];
};

static void paths_add(struct paths *ps, const char *rel)
{
	cr_assert(ps->n < MAX_FILES, "more than %d files", MAX_FILES);
	ps->v[ps->n] = strdup(rel);
	cr_assert(ps->v[ps->n]);
	ps->n++;
}

/* Regular files under RMP_SOURCE_DIR/rel (recursively), as paths from the
 * root; rel "" lists the root's own files only. */
static void walk(const char *rel, bool recurse, struct paths *out)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/%s", RMP_SOURCE_DIR, rel);
	DIR *d = opendir(dir);
	cr_assert(d, "cannot list %s", dir);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.')
			continue; /* ., .., .git, .ci */
		char sub[4096], full[8192];
		snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
		snprintf(full, sizeof(full), "%s/%s", RMP_SOURCE_DIR, sub);
		struct stat st;
		if (lstat(full, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (recurse)
				walk(sub, true, out);
		} else if (S_ISREG(st.st_mode)) {
			paths_add(out, sub);
		}
	}
	closedir(d);
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Whether a file named ref exists in the tree: a path from the root, or
 * (a bare name) any file of that name. */
static bool md_exists(const struct paths *tree, const char *ref)
{
	for (size_t i = 0; i < tree->n; i++) {
		if (strchr(ref, '/') ? strcmp(tree->v[i], ref) == 0
				     : strcmp(base_name(tree->v[i]), ref) == 0)
			return true;
		/* "vm/README.md" from inside deploy/ */
		size_t lt = strlen(tree->v[i]), lr = strlen(ref);
		if (strchr(ref, '/') && lt > lr && tree->v[i][lt - lr - 1] == '/' &&
		    strcmp(tree->v[i] + lt - lr, ref) == 0)
			return true;
	}
	return false;
}

/* The headings of DESIGN.md ("## Name" and "### Name"), text only. */
static void headings(const char *doc, struct names *out)
{
	for (const char *p = doc; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, "## ", 3) != 0 && strncmp(p, "### ", 4) != 0)
			continue;
		const char *s = p + (p[2] == ' ' ? 3 : 4);
		const char *e = strchr(s, '\n');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		char h[NAME_LEN];
		cr_assert(n < NAME_LEN, "DESIGN.md: a heading of %zu bytes", n);
		memcpy(h, s, n);
		h[n] = '\0';
		add_name(out, h);
	}
}

/* The words after "DESIGN.md, " as one line: an opening quote dropped,
 * a comment that wraps there joined (the next line's indentation and
 * comment leader - " * ", "# ", "// " - become one space). */
static void cite_text(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	if (*s == '"')
		s++;
	while (*s && n + 1 < cap) {
		if (*s == '\n') {
			s++;
			while (*s == ' ' || *s == '\t' || *s == '*' || *s == '#' || *s == '/')
				s++;
			out[n++] = ' ';
			continue;
		}
		out[n++] = *s++;
	}
	out[n] = '\0';
}

static bool md_char(char c)
{
	return ident_char(c) || c == '-' || c == '.' || c == '/';
}

/* Checks every "X.md" and every "DESIGN.md, Section" in one file. Appends
 * "path:line: why" to bad for each offence; returns how many. */
static size_t check_cites(const char *rel, const char *text, const struct paths *tree,
			  const struct names *secs, char *bad, size_t cap)
{
	size_t k = 0;
	for (const char *p = strstr(text, ".md"); p; p = strstr(p + 3, ".md")) {
		if (ident_char(p[3]))
			continue; /* ".mdx", ".md5" */
		const char *s = p;
		while (s > text && md_char(s[-1]))
			s--;
		while (strncmp(s, "./", 2) == 0 || strncmp(s, "../", 3) == 0)
			s += s[0] == '.' && s[1] == '/' ? 2 : 3; /* "./x.md", "../x.md" */
		if (s == p)
			continue;
		char ref[256];
		size_t n = (size_t)(p + 3 - s);
		if (n >= sizeof(ref))
			continue;
		memcpy(ref, s, n);
		ref[n] = '\0';
		size_t line = 1;
		for (const char *q = text; q < p; q++)
			line += *q == '\n';
		char why[400] = "";
		if (!md_exists(tree, ref)) {
			snprintf(why, sizeof(why), "%s is not in the tree", ref);
		} else if (strcmp(ref, "DESIGN.md") == 0) {
			const char *after = p + 3;
			if (after[0] == ',' && after[1] == ' ') {
				char name[NAME_LEN + 2];
				cite_text(after + 2, name, sizeof(name));
				bool found = false;
				for (size_t i = 0; i < secs->n && !found; i++) {
					size_t hl = strlen(secs->v[i]);
					found = strncmp(name, secs->v[i], hl) == 0 &&
						!isalnum((unsigned char)name[hl]);
				}
				if (!found)
					snprintf(why, sizeof(why), "\"DESIGN.md, %.40s...\" names no section of "
						 "DESIGN.md", name);
			} else if (after[0] == ' ' && (isdigit((unsigned char)after[1]) ||
						       strncmp(after + 1, "section", 7) == 0)) {
				snprintf(why, sizeof(why), "DESIGN.md cited by number: name the section "
					 "(\"DESIGN.md, The buddy engine\")");
			}
		}
		if (why[0]) {
			k++;
			size_t used = strlen(bad);
			snprintf(bad + used, cap - used, "\n  %s:%zu: %s", rel, line, why);
		}
	}
	return k;
}

Test(design_doc, cites_point_into_the_tree)
{
	static struct paths tree;
	static struct names secs;
	static char bad[16384];
	char *doc = slurp("DESIGN.md");
	const char *dirs[] = { "common", "server", "donor", "client", "tests", "deploy" };

	headings(doc, &secs);
	cr_assert(has_name(&secs, "The buddy engine") && has_name(&secs, "Wire protocol"),
		  "DESIGN.md's headings were not parsed");
	walk("", false, &tree);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		walk(dirs[i], true, &tree);
	size_t k = 0, scanned = 0;
	for (size_t i = 0; i < tree.n; i++) {
		const char *rel = tree.v[i];
		/* This file spells out the forms it refuses. */
		if (strcmp(rel, "tests/unit/test_design_doc.c") == 0)
			continue;
		char *text = slurp(rel); /* a binary file is read up to its first NUL */
		k += check_cites(rel, text, &tree, &secs, bad, sizeof(bad));
		scanned++;
		free(text);
	}
	cr_assert(scanned > 50, "scanned only %zu files", scanned);
	cr_assert_eq(k, 0, "%zu cite(s) that do not point into the tree:%s", k, bad);
	free(doc);
}

/* The cite checker itself: it must be able to say no, and yes. */
Test(design_doc, the_cite_checker_tells_good_from_bad)
{
	static struct paths tree;
	static struct names secs;
	char bad[2048] = "";
	const char *text = "a (DESIGN.md, The buddy engine) b\n"
			   " * DESIGN.md, \"The buddy\n * engine\" c\n"
			   "see ./README.md and deploy/vm/README.md\n"
			   "(DESIGN.md 4) (DESIGN.md section 4) (STYLE.md 9) (DESIGN.md, No such part)\n";

	paths_add(&tree, "DESIGN.md");
	paths_add(&tree, "README.md");
	paths_add(&tree, "deploy/vm/README.md");
	add_name(&secs, "The buddy engine");
	size_t k = check_cites("x.c", text, &tree, &secs, bad, sizeof(bad));
	cr_assert_eq(k, 4, "%zu offences:%s", k, bad);
	cr_assert(strstr(bad, "x.c:5: DESIGN.md cited by number") != NULL, "%s", bad);
	cr_assert(strstr(bad, "x.c:5: STYLE.md is not in the tree") != NULL, "%s", bad);
	cr_assert(strstr(bad, "No such part") != NULL, "%s", bad);
}

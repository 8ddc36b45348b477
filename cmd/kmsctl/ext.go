package main

import "reflect"

// withoutExtensions is a copy of an answer document with its raftkms
// extension fields (tagged ext:"raftkms") zeroed, so that omitempty drops
// them; fields named in keep stay.
func withoutExtensions(doc any, keep map[string]bool) any {
	v := reflect.ValueOf(doc)
	if !v.IsValid() {
		return doc
	}
	return stripValue(v, keep).Interface()
}

func stripValue(v reflect.Value, keep map[string]bool) reflect.Value {
	switch v.Kind() {
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Tag.Get("ext") == "raftkms" {
				if name, _, _ := cutTag(f.Tag.Get("json")); !keep[name] {
					out.Field(i).SetZero()
				}
				continue
			}
			out.Field(i).Set(stripValue(v.Field(i), keep))
		}
		return out
	case reflect.Slice:
		if v.IsNil() || v.Type().Elem().Kind() == reflect.Uint8 {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(stripValue(v.Index(i), keep))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() || v.Elem().Kind() != reflect.Struct {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(stripValue(v.Elem(), keep))
		return out
	}
	return v
}

func cutTag(tag string) (name, rest string, ok bool) {
	for i := 0; i < len(tag); i++ {
		if tag[i] == ',' {
			return tag[:i], tag[i+1:], true
		}
	}
	return tag, "", false
}
